// GGUF writer and reader: exact bytes of a tiny file, round trips of every value type, byte-identical
// rewrites, streaming, and corrupt files (which must fail with DT_EINPUT naming the file and the
// key or tensor, never crash). The tokenizer metadata tests live in test_gguf_tokenizer.c.
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include "autograd/context.h"
#include "models/gguf.h"
#include "models/gguf_write.h"
#include "tests/test_util.h"

static char tmpdir[256];

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(p, 1, (size_t)sz, f);
    fclose(f);
    return p;
}

static void spit(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

// Counts files in tmpdir whose name contains ".tmp." (leftover temp files).
static int count_temp_files(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

// ---- 1. the exact bytes of a tiny file, spelled out from the specification ----

static void test_exact_bytes(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    const char *path = tmp("tiny.gguf");
    dt_gguf_writer *w;
    const float data[3] = {1.0f, -2.0f, 0.5f};
    int st = dt_gguf_writer_new(&ctx, path, &w);
    st = st ? st : dt_gguf_set_u32(&ctx, w, "a", 7);
    st = st ? st : dt_gguf_set_str(&ctx, w, "s", "hi");
    st = st ? st : dt_gguf_add_tensor(&ctx, w, "t", DT_GGML_F32, 2, (int64_t[]){1, 3});
    st = st ? st : dt_gguf_write_tensor(&ctx, w, "t", data);
    st = st ? st : dt_gguf_writer_finish(&ctx, w);
    dt_gguf_writer_free(w);
    if (st) { TEST_FAIL("exact_bytes", "write: %s", ctx.msg); return; }

    uint8_t want[160] = {0};
    size_t n = 0;
#define B(...) do { const uint8_t b_[] = {__VA_ARGS__}; memcpy(want + n, b_, sizeof b_); n += sizeof b_; } while (0)
    B('G', 'G', 'U', 'F', 3, 0, 0, 0);             // magic, version 3
    B(1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0); // 1 tensor, 2 keys
    B(1, 0, 0, 0, 0, 0, 0, 0, 'a', 4, 0, 0, 0, 7, 0, 0, 0);             // "a": u32 7
    B(1, 0, 0, 0, 0, 0, 0, 0, 's', 8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 'h', 'i'); // "s": str "hi"
    B(1, 0, 0, 0, 0, 0, 0, 0, 't', 2, 0, 0, 0);                         // "t", 2 dims
    B(3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0);                  // ne = {3, 1}: reversed (1, 3)
    B(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);                              // F32, offset 0
    n = (n + 31) / 32 * 32;                                             // zero padding to 32
    memcpy(want + n, data, 12);
    n += 12;
    n = (n + 31) / 32 * 32;                                             // padding after the tensor
#undef B
    size_t got_n;
    uint8_t *got = slurp(path, &got_n);
    TEST_CHECK("exact_bytes", got && got_n == n && !memcmp(got, want, n), "file of %zu bytes differs from the %zu expected", got_n, n);
    free(got);
    st = dt_gguf_check_spec(&ctx, path);
    TEST_CHECK("exact_bytes_check_spec", st == DT_OK, "%s", ctx.msg);
}

// ---- 2. every value type, several tensor types and shapes: write, read back, compare ----

typedef struct {
    const char *name;
    uint32_t type;
    int ndim;
    int64_t shape[4];
} tdesc;

static const tdesc TENSORS[] = {
    {"token_embd.weight", DT_GGML_F16, 2, {7, 5}},
    {"blk.0.attn_norm.weight", DT_GGML_F32, 1, {5}},
    {"blk.0.attn_q.weight", DT_GGML_BF16, 2, {5, 5}},
    {"three.d", DT_GGML_F32, 3, {2, 3, 4}},
    {"four.d", DT_GGML_F16, 4, {1, 2, 3, 3}},
    {"empty", DT_GGML_F32, 2, {0, 4}},
    {"q8.quantized", 8 /* Q8_0 */, 2, {2, 64}},
};
#define N_TENSORS (sizeof TENSORS / sizeof TENSORS[0])

static size_t tensor_bytes(const tdesc *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    if (t->type == 8) return n / 32 * 34;
    return n * (t->type == DT_GGML_F32 ? 4 : 2);
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 131 + seed * 17 + 7) % 251);
}

static const char *const STRS[] = {"alpha", "", "ünïcödé ▁Hello", "with space", "Ġthe"};

// The fill callback of dt_gguf_write_tensors: writes the tensor in chunks of 5 bytes.
static int fill_tensor(void *user, dt_ctx *ctx, dt_gguf_writer *w, const char *name, size_t nbytes) {
    (void)user;
    size_t i = 0;
    while (strcmp(TENSORS[i].name, name)) i++;
    uint8_t *buf = malloc(nbytes + 1);
    fill(buf, nbytes, (unsigned)i);
    int st = DT_OK;
    for (size_t off = 0; off < nbytes && !st; off += 5) st = dt_gguf_write_data(ctx, w, buf + off, nbytes - off < 5 ? nbytes - off : 5);
    free(buf);
    return st;
}

// chunk: 0 writes each tensor whole, SIZE_MAX through the fill callback, else in chunks of that size.
static int write_everything(dt_ctx *ctx, const char *path, uint32_t alignment, size_t chunk) {
    dt_gguf_writer *w;
    int st = dt_gguf_writer_new(ctx, path, &w);
    if (st) return st;
    const uint8_t u8a[] = {0, 1, 255};
    const int16_t i16a[] = {-32768, 0, 32767};
    const uint32_t u32a[] = {0, 1, 4000000000u};
    const int32_t i32a[] = {-5, 6};
    const float f32a[] = {1.5f, -0.0f, 3.25e-8f};
    const double f64a[] = {1e300, -2.5};
    const uint64_t u64a[] = {UINT64_MAX, 1};
    const int64_t i64a[] = {INT64_MIN, 42};
    const uint8_t boola[] = {1, 0, 1, 1};
    if (alignment) st = st ? st : dt_gguf_set_u32(ctx, w, "general.alignment", alignment);
    st = st ? st : dt_gguf_set_str(ctx, w, "general.architecture", "llama");
    st = st ? st : dt_gguf_set_u8(ctx, w, "v.u8", 200);
    st = st ? st : dt_gguf_set_i8(ctx, w, "v.i8", -100);
    st = st ? st : dt_gguf_set_u16(ctx, w, "v.u16", 65000);
    st = st ? st : dt_gguf_set_i16(ctx, w, "v.i16", -30000);
    st = st ? st : dt_gguf_set_u32(ctx, w, "v.u32", 4000000000u);
    st = st ? st : dt_gguf_set_i32(ctx, w, "v.i32", -2000000000);
    st = st ? st : dt_gguf_set_u64(ctx, w, "v.u64", UINT64_MAX - 1);
    st = st ? st : dt_gguf_set_i64(ctx, w, "v.i64", INT64_MIN + 1);
    st = st ? st : dt_gguf_set_f32(ctx, w, "v.f32", 0.1f);
    st = st ? st : dt_gguf_set_f64(ctx, w, "v.f64", 0.1);
    st = st ? st : dt_gguf_set_bool(ctx, w, "v.bool", true);
    st = st ? st : dt_gguf_set_str(ctx, w, "v.str", "a chat template {{ x }}\n");
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.u8", DT_GGUF_U8, u8a, 3);
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.i16", DT_GGUF_I16, i16a, 3);
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.u32", DT_GGUF_U32, u32a, 3);
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.i32", DT_GGUF_I32, i32a, 2);
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.f32", DT_GGUF_F32, f32a, 3);
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.f64", DT_GGUF_F64, f64a, 2);
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.u64", DT_GGUF_U64, u64a, 2);
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.i64", DT_GGUF_I64, i64a, 2);
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.bool", DT_GGUF_BOOL, boola, 4);
    st = st ? st : dt_gguf_set_arr(ctx, w, "a.empty", DT_GGUF_I32, NULL, 0);
    st = st ? st : dt_gguf_set_arr_str(ctx, w, "a.str", STRS, NULL, 5);
    st = st ? st : dt_gguf_set_u32(ctx, w, "v.replaced", 1);
    st = st ? st : dt_gguf_set_u32(ctx, w, "v.replaced", 2); // replaced in place, keeps its position
    for (size_t i = 0; i < N_TENSORS && !st; i++)
        st = dt_gguf_add_tensor(ctx, w, TENSORS[i].name, TENSORS[i].type, TENSORS[i].ndim, TENSORS[i].shape);
    if (chunk == SIZE_MAX && !st) st = dt_gguf_write_tensors(ctx, w, fill_tensor, NULL);
    for (size_t i = 0; i < N_TENSORS && !st && chunk != SIZE_MAX; i++) {
        size_t nb = tensor_bytes(&TENSORS[i]);
        uint8_t *buf = malloc(nb + 1);
        fill(buf, nb, (unsigned)i);
        if (chunk == 0) {
            st = dt_gguf_write_tensor(ctx, w, TENSORS[i].name, buf);
        } else {
            for (size_t off = 0; off < nb && !st; off += chunk)
                st = dt_gguf_write_data(ctx, w, buf + off, nb - off < chunk ? nb - off : chunk);
        }
        free(buf);
    }
    st = st ? st : dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    return st;
}

static const dt_gguf_kv *kv(const dt_gguf_file *f, const char *key) {
    int64_t i = dt_gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kvs[i];
}

static void check_everything(const char *path, size_t alignment, const char *label) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char name[128];
    dt_gguf_file *f;
    int st = dt_gguf_open(&ctx, path, &f);
    snprintf(name, sizeof name, "%s_open", label);
    TEST_CHECK(name, st == DT_OK, "%s", ctx.msg);
    if (st) return;
    int bad = 0;
#define EXPECT(cond) do { if (!(cond)) { bad++; printf("  mismatch: %s\n", #cond); } } while (0)
    EXPECT(f->version == 3 && f->alignment == alignment);
    EXPECT(f->n_kv == 25 + (alignment != 32));
    EXPECT(f->n_tensors == (int64_t)N_TENSORS);
    EXPECT(!strcmp(f->kvs[alignment != 32].key, "general.architecture"));
    EXPECT(kv(f, "v.u8")->type == DT_GGUF_U8 && dt_gguf_kv_int(kv(f, "v.u8"), 0) == 200);
    EXPECT(kv(f, "v.i8")->type == DT_GGUF_I8 && dt_gguf_kv_int(kv(f, "v.i8"), 0) == -100);
    EXPECT(kv(f, "v.u16")->type == DT_GGUF_U16 && dt_gguf_kv_int(kv(f, "v.u16"), 0) == 65000);
    EXPECT(kv(f, "v.i16")->type == DT_GGUF_I16 && dt_gguf_kv_int(kv(f, "v.i16"), 0) == -30000);
    EXPECT(kv(f, "v.u32")->type == DT_GGUF_U32 && dt_gguf_kv_int(kv(f, "v.u32"), 0) == 4000000000LL);
    EXPECT(kv(f, "v.i32")->type == DT_GGUF_I32 && dt_gguf_kv_int(kv(f, "v.i32"), 0) == -2000000000);
    EXPECT(kv(f, "v.u64")->type == DT_GGUF_U64 && dt_gguf_kv_uint(kv(f, "v.u64"), 0) == UINT64_MAX - 1);
    EXPECT(kv(f, "v.i64")->type == DT_GGUF_I64 && dt_gguf_kv_int(kv(f, "v.i64"), 0) == INT64_MIN + 1);
    EXPECT(kv(f, "v.f32")->type == DT_GGUF_F32 && dt_gguf_kv_float(kv(f, "v.f32"), 0) == (double)0.1f);
    EXPECT(kv(f, "v.f64")->type == DT_GGUF_F64 && dt_gguf_kv_float(kv(f, "v.f64"), 0) == 0.1);
    EXPECT(kv(f, "v.bool")->type == DT_GGUF_BOOL && dt_gguf_kv_int(kv(f, "v.bool"), 0) == 1);
    EXPECT(kv(f, "v.str")->type == DT_GGUF_STRING && !strcmp(kv(f, "v.str")->strs[0], "a chat template {{ x }}\n"));
    EXPECT(dt_gguf_kv_int(kv(f, "v.replaced"), 0) == 2 && dt_gguf_find_key(f, "v.replaced") == f->n_kv - 1);
    const dt_gguf_kv *a = kv(f, "a.u8");
    EXPECT(a->type == DT_GGUF_ARRAY && a->arr_type == DT_GGUF_U8 && a->n == 3 && dt_gguf_kv_int(a, 2) == 255);
    a = kv(f, "a.i16");
    EXPECT(a->arr_type == DT_GGUF_I16 && a->n == 3 && dt_gguf_kv_int(a, 0) == -32768);
    a = kv(f, "a.u32");
    EXPECT(a->arr_type == DT_GGUF_U32 && dt_gguf_kv_int(a, 2) == 4000000000LL);
    a = kv(f, "a.i32");
    EXPECT(a->arr_type == DT_GGUF_I32 && a->n == 2 && dt_gguf_kv_int(a, 0) == -5 && dt_gguf_kv_int(a, 1) == 6);
    a = kv(f, "a.f32");
    EXPECT(a->arr_type == DT_GGUF_F32 && dt_gguf_kv_float(a, 2) == (double)3.25e-8f && signbit(dt_gguf_kv_float(a, 1)));
    a = kv(f, "a.f64");
    EXPECT(a->arr_type == DT_GGUF_F64 && dt_gguf_kv_float(a, 0) == 1e300);
    a = kv(f, "a.u64");
    EXPECT(a->arr_type == DT_GGUF_U64 && dt_gguf_kv_uint(a, 0) == UINT64_MAX);
    a = kv(f, "a.i64");
    EXPECT(a->arr_type == DT_GGUF_I64 && dt_gguf_kv_int(a, 0) == INT64_MIN);
    a = kv(f, "a.bool");
    EXPECT(a->arr_type == DT_GGUF_BOOL && a->n == 4 && dt_gguf_kv_int(a, 1) == 0 && dt_gguf_kv_int(a, 3) == 1);
    a = kv(f, "a.empty");
    EXPECT(a->arr_type == DT_GGUF_I32 && a->n == 0);
    a = kv(f, "a.str");
    EXPECT(a->arr_type == DT_GGUF_STRING && a->n == 5);
    for (int i = 0; i < 5 && a->n == 5; i++) EXPECT(!strcmp(a->strs[i], STRS[i]) && a->str_lens[i] == strlen(STRS[i]));
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tdesc *d = &TENSORS[i];
        const dt_gguf_tensor *t = dt_gguf_find_tensor(f, d->name);
        EXPECT(t && t->type == d->type && t->n_dims == d->ndim);
        if (!t) continue;
        for (int k = 0; k < d->ndim; k++) EXPECT(t->ne[k] == d->shape[d->ndim - 1 - k]);
        size_t nb = tensor_bytes(d);
        uint8_t *buf = malloc(nb + 1);
        fill(buf, nb, (unsigned)i);
        EXPECT(t->nbytes == nb && !memcmp(t->data, buf, nb));
        EXPECT(t->offset % alignment == 0 && ((uintptr_t)t->data - (uintptr_t)f->map) % alignment == 0);
        free(buf);
    }
    dt_tensor view;
    const dt_gguf_tensor *q = dt_gguf_find_tensor(f, "blk.0.attn_q.weight");
    EXPECT(q && dt_gguf_tensor_view(&ctx, f, q, &view) == DT_OK && view.dtype == DT_BF16 && view.ndim == 2 &&
           view.shape[0] == 5 && view.shape[1] == 5 && view.data == q->data);
    q = dt_gguf_find_tensor(f, "q8.quantized");
    EXPECT(q && dt_gguf_tensor_view(&ctx, f, q, &view) == DT_OK && view.dtype == DT_Q8_0 && view.data == q->data);
    int64_t iv;
    const char *sv;
    EXPECT(dt_gguf_get_int(&ctx, f, "v.u16", &iv) == DT_OK && iv == 65000);
    EXPECT(dt_gguf_get_str(&ctx, f, "general.architecture", &sv) == DT_OK && !strcmp(sv, "llama"));
    EXPECT(dt_gguf_get_int(&ctx, f, "nope", &iv) == DT_EINPUT && strstr(ctx.msg, "'nope'") && strstr(ctx.msg, path));
    EXPECT(dt_gguf_get_int(&ctx, f, "v.str", &iv) == DT_EINPUT && strstr(ctx.msg, "'v.str'"));
#undef EXPECT
    dt_gguf_close(f);
    snprintf(name, sizeof name, "%s_roundtrip", label);
    TEST_CHECK(name, bad == 0, "%d mismatches", bad);
    st = dt_gguf_check_spec(&ctx, path);
    snprintf(name, sizeof name, "%s_check_spec", label);
    TEST_CHECK(name, st == DT_OK, "%s", ctx.msg);
}

static bool same_file(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *pa = slurp(a, &na), *pb = slurp(b, &nb);
    bool same = pa && pb && na == nb && !memcmp(pa, pb, na);
    free(pa);
    free(pb);
    return same;
}

// Copies every key and tensor of a file into a new one with the writer.
static int rewrite(dt_ctx *ctx, const char *src, const char *dst) {
    dt_gguf_file *f;
    int st = dt_gguf_open(ctx, src, &f);
    if (st) return st;
    dt_gguf_writer *w = NULL;
    st = dt_gguf_writer_new(ctx, dst, &w);
    for (int64_t i = 0; i < f->n_kv && !st; i++) st = dt_gguf_set_kv(ctx, w, &f->kvs[i]);
    for (int64_t i = 0; i < f->n_tensors && !st; i++) {
        const dt_gguf_tensor *t = &f->tensors[i];
        int64_t shape[4];
        for (int d = 0; d < t->n_dims; d++) shape[d] = t->ne[t->n_dims - 1 - d];
        st = dt_gguf_add_tensor(ctx, w, t->name, t->type, t->n_dims, shape);
    }
    for (int64_t i = 0; i < f->n_tensors && !st; i++) st = dt_gguf_write_tensor(ctx, w, f->tensors[i].name, f->tensors[i].data);
    st = st ? st : dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    dt_gguf_close(f);
    return st;
}

static void test_roundtrip(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    int st = write_everything(&ctx, tmp("all.gguf"), 0, 0);
    TEST_CHECK("write_all_types", st == DT_OK, "%s", ctx.msg);
    if (st) return;
    check_everything(tmp("all.gguf"), 32, "default_alignment");
    st = write_everything(&ctx, tmp("all64.gguf"), 64, 0);
    TEST_CHECK("write_alignment_64", st == DT_OK, "%s", ctx.msg);
    if (!st) check_everything(tmp("all64.gguf"), 64, "alignment_64");

    st = write_everything(&ctx, tmp("again.gguf"), 0, 0);
    TEST_CHECK("reproducible", st == DT_OK && same_file(tmp("all.gguf"), tmp("again.gguf")), "second write differs: %s", ctx.msg);
    st = write_everything(&ctx, tmp("chunked.gguf"), 0, 7);
    TEST_CHECK("streamed_in_chunks", st == DT_OK && same_file(tmp("all.gguf"), tmp("chunked.gguf")), "chunked write differs: %s", ctx.msg);
    st = write_everything(&ctx, tmp("callback.gguf"), 0, SIZE_MAX);
    TEST_CHECK("streamed_by_callback", st == DT_OK && same_file(tmp("all.gguf"), tmp("callback.gguf")), "callback write differs: %s", ctx.msg);
    st = rewrite(&ctx, tmp("all.gguf"), tmp("rewritten.gguf"));
    TEST_CHECK("rewrite_byte_identical", st == DT_OK && same_file(tmp("all.gguf"), tmp("rewritten.gguf")), "%s", st ? ctx.msg : "bytes differ");
    st = rewrite(&ctx, tmp("all64.gguf"), tmp("rewritten64.gguf"));
    TEST_CHECK("rewrite_byte_identical_64", st == DT_OK && same_file(tmp("all64.gguf"), tmp("rewritten64.gguf")), "%s", st ? ctx.msg : "bytes differ");

    // A file with no tensors (e.g. vocabulary only) is valid too.
    dt_gguf_writer *w;
    st = dt_gguf_writer_new(&ctx, tmp("notensors.gguf"), &w);
    st = st ? st : dt_gguf_set_str(&ctx, w, "general.architecture", "llama");
    st = st ? st : dt_gguf_writer_finish(&ctx, w);
    dt_gguf_writer_free(w);
    st = st ? st : dt_gguf_check_spec(&ctx, tmp("notensors.gguf"));
    TEST_CHECK("no_tensors", st == DT_OK, "%s", ctx.msg);
}

// ---- 3. writer misuse: errors, and nothing left behind ----

static int fill_half(void *user, dt_ctx *ctx, dt_gguf_writer *w, const char *name, size_t nbytes) {
    (void)name;
    return dt_gguf_write_data(ctx, w, user, nbytes / 2);
}

static void test_writer_errors(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    const char *path = tmp("bad_write.gguf");
    float d[4] = {0};
    dt_gguf_writer *w;
    dt_gguf_writer_new(&ctx, path, &w);
    int st = dt_gguf_add_tensor(&ctx, w, "a_name_that_is_much_too_long_for_llama_cpp_to_accept_it_at_all_xx", DT_GGML_F32, 1, (int64_t[]){4});
    TEST_CHECK("writer_long_name", st == DT_EINPUT && strstr(ctx.msg, "63"), "status %d: %s", st, ctx.msg);
    st = dt_gguf_set_str(&ctx, w, "general.alignment", "32");
    TEST_CHECK("writer_alignment_type", st == DT_EINPUT && strstr(ctx.msg, "general.alignment"), "status %d: %s", st, ctx.msg);
    st = dt_gguf_set_u32(&ctx, w, "general.alignment", 48);
    TEST_CHECK("writer_alignment_pow2", st == DT_EINPUT && strstr(ctx.msg, "power of two"), "status %d: %s", st, ctx.msg);
    dt_gguf_add_tensor(&ctx, w, "x", DT_GGML_F32, 1, (int64_t[]){4});
    st = dt_gguf_add_tensor(&ctx, w, "x", DT_GGML_F32, 1, (int64_t[]){4});
    TEST_CHECK("writer_duplicate_tensor", st == DT_EINPUT && strstr(ctx.msg, "'x'"), "status %d: %s", st, ctx.msg);
    st = dt_gguf_add_tensor(&ctx, w, "q", 8, 1, (int64_t[]){33});
    TEST_CHECK("writer_block_size", st == DT_EINPUT && strstr(ctx.msg, "block size"), "status %d: %s", st, ctx.msg);
    dt_gguf_add_tensor(&ctx, w, "y", DT_GGML_F32, 1, (int64_t[]){4});
    st = dt_gguf_write_tensor(&ctx, w, "y", d);
    TEST_CHECK("writer_out_of_order", st == DT_EINTERNAL && strstr(ctx.msg, "'x'"), "status %d: %s", st, ctx.msg);
    st = dt_gguf_writer_finish(&ctx, w);
    TEST_CHECK("writer_finish_after_error", st != DT_OK, "finish succeeded after an error");
    dt_gguf_writer_free(w);
    TEST_CHECK("writer_no_file_after_error", access(path, F_OK) != 0 && count_temp_files() == 0,
               "a file or temp file is left (temp files: %d)", count_temp_files());

    dt_gguf_writer_new(&ctx, path, &w);
    dt_gguf_add_tensor(&ctx, w, "x", DT_GGML_F32, 1, (int64_t[]){4});
    dt_gguf_write_data(&ctx, w, d, 8);
    st = dt_gguf_writer_finish(&ctx, w);
    TEST_CHECK("writer_incomplete", st == DT_EINTERNAL && strstr(ctx.msg, "'x'") && strstr(ctx.msg, "8 of its 16"), "status %d: %s", st, ctx.msg);
    dt_gguf_writer_free(w);
    TEST_CHECK("writer_incomplete_removed", access(path, F_OK) != 0 && count_temp_files() == 0, "a file is left");

    dt_gguf_writer_new(&ctx, path, &w);
    dt_gguf_add_tensor(&ctx, w, "x", DT_GGML_F32, 1, (int64_t[]){4});
    st = dt_gguf_write_tensors(&ctx, w, fill_half, d);
    TEST_CHECK("writer_callback_short", st == DT_EINTERNAL && strstr(ctx.msg, "'x'") && strstr(ctx.msg, "8 of its 16"), "status %d: %s", st, ctx.msg);
    dt_gguf_writer_free(w);
    TEST_CHECK("writer_callback_short_removed", access(path, F_OK) != 0 && count_temp_files() == 0, "a file is left");

    dt_gguf_writer_new(&ctx, path, &w);
    st = dt_gguf_writer_finish(&ctx, w);
    st = st ? st : dt_gguf_writer_finish(&ctx, w);
    TEST_CHECK("writer_finish_twice", st == DT_EINTERNAL && strstr(ctx.msg, "twice") && access(path, F_OK) == 0, "status %d: %s", st, ctx.msg);
    dt_gguf_writer_free(w);
    unlink(path);

    dt_gguf_writer_new(&ctx, "/nonexistent_dir_for_dt/x.gguf", &w);
    st = dt_gguf_writer_finish(&ctx, w);
    TEST_CHECK("writer_bad_dir", st == DT_EINPUT && strstr(ctx.msg, "/nonexistent_dir_for_dt/x.gguf"), "status %d: %s", st, ctx.msg);
    dt_gguf_writer_free(w);
}

// ---- 4. corrupt files ----

// Layout of the base file for the corruption tests, found by searching for known byte strings.
typedef struct {
    uint8_t *p;
    size_t n;
    size_t key_str_len_at;  // the u64 length of the value of key "k.str"
    size_t t1_info_at;      // the u32 n_dims of tensor "t1"
    size_t t2_info_at;      // the u32 n_dims of tensor "t2"
} base_file;

static size_t find(const uint8_t *p, size_t n, const char *s, size_t sl) {
    for (size_t i = 0; i + sl <= n; i++)
        if (!memcmp(p + i, s, sl)) return i;
    return SIZE_MAX;
}

static bool make_base(dt_ctx *ctx, base_file *b) {
    const char *path = tmp("base.gguf");
    dt_gguf_writer *w;
    float d1[8], d2[3] = {1, 2, 3};
    for (int i = 0; i < 8; i++) d1[i] = (float)i;
    int st = dt_gguf_writer_new(ctx, path, &w);
    st = st ? st : dt_gguf_set_str(ctx, w, "k.str", "value");
    st = st ? st : dt_gguf_set_arr_str(ctx, w, "k.arr", (const char *[]){"x", "yy"}, NULL, 2);
    st = st ? st : dt_gguf_add_tensor(ctx, w, "t1", DT_GGML_F32, 2, (int64_t[]){2, 4});
    st = st ? st : dt_gguf_add_tensor(ctx, w, "t2", DT_GGML_F32, 1, (int64_t[]){3});
    st = st ? st : dt_gguf_write_tensor(ctx, w, "t1", d1);
    st = st ? st : dt_gguf_write_tensor(ctx, w, "t2", d2);
    st = st ? st : dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    if (st) return false;
    b->p = slurp(path, &b->n);
    b->key_str_len_at = find(b->p, b->n, "k.str", 5) + 5 + 4;
    b->t1_info_at = find(b->p, b->n, "\x02\0\0\0\0\0\0\0t1", 10) + 10;
    b->t2_info_at = find(b->p, b->n, "\x02\0\0\0\0\0\0\0t2", 10) + 10;
    return b->key_str_len_at < b->n && b->t1_info_at < b->n && b->t2_info_at < b->n;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

// Writes the mutated copy, opens it and checks status and message words.
static void expect_corrupt(const char *name, const uint8_t *p, size_t n, int want_status, const char *w1, const char *w2) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    const char *path = tmp("corrupt.gguf");
    spit(path, p, n);
    dt_gguf_file *f = NULL;
    int st = dt_gguf_open(&ctx, path, &f);
    TEST_CHECK(name, st == want_status && strstr(ctx.msg, path) && (!w1 || strstr(ctx.msg, w1)) && (!w2 || strstr(ctx.msg, w2)),
               "status %d (want %d), message: %s", st, want_status, ctx.msg);
    dt_gguf_close(f);
}

static void expect_spec_fail(const char *name, const uint8_t *p, size_t n, const char *w1) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    const char *path = tmp("spec.gguf");
    spit(path, p, n);
    dt_gguf_file *f = NULL;
    int open_st = dt_gguf_open(&ctx, path, &f);
    dt_gguf_close(f);
    int st = dt_gguf_check_spec(&ctx, path);
    TEST_CHECK(name, open_st == DT_OK && st == DT_EINPUT && strstr(ctx.msg, path) && strstr(ctx.msg, w1),
               "open %d, check %d: %s", open_st, st, ctx.msg);
}

static void test_corrupt(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    base_file b;
    if (!make_base(&ctx, &b)) { TEST_FAIL("corrupt_base", "cannot build the base file: %s", ctx.msg); return; }
    uint8_t *c = malloc(b.n + 64);
#define RESET() memcpy(c, b.p, b.n)

    // Every truncation must fail cleanly. Cutting only the padding after the last tensor (its last
    // 20 bytes) still leaves a readable file, which only the strict check rejects.
    int bad = 0;
    for (size_t len = 0; len < b.n; len++) {
        spit(tmp("trunc.gguf"), b.p, len);
        dt_gguf_file *f = NULL;
        int st = dt_gguf_open(&ctx, tmp("trunc.gguf"), &f);
        dt_gguf_close(f);
        bool ok = len < b.n - 20 ? st == DT_EINPUT && strstr(ctx.msg, "trunc.gguf")
                                 : st == DT_OK && dt_gguf_check_spec(&ctx, tmp("trunc.gguf")) == DT_EINPUT;
        if (!ok && bad++ < 3) printf("  length %zu: status %d: %s\n", len, st, ctx.msg);
    }
    TEST_CHECK("corrupt_every_truncation", bad == 0, "%d of %zu truncations not rejected", bad, b.n);
    expect_corrupt("corrupt_truncated_data", b.p, b.n - 21, DT_EINPUT, "'t2'", "past the end");

    RESET(); memcpy(c, "GGML", 4);
    expect_corrupt("corrupt_bad_magic", c, b.n, DT_EINPUT, "magic", "GGUF");
    RESET(); put_u32(c + 4, 4);
    expect_corrupt("corrupt_bad_version", c, b.n, DT_EINPUT, "version 4", NULL);
    RESET(); put_u32(c + 4, 1);
    expect_corrupt("corrupt_version_1", c, b.n, DT_EINPUT, "version 1", NULL);
    RESET(); put_u64(c + 8, 1ull << 40);
    expect_corrupt("corrupt_tensor_count", c, b.n, DT_EINPUT, "tensor count", NULL);
    RESET(); put_u64(c + 16, UINT64_MAX);
    expect_corrupt("corrupt_kv_count", c, b.n, DT_EINPUT, "key/value count", NULL);
    RESET(); put_u64(c + b.key_str_len_at, b.n);
    expect_corrupt("corrupt_string_past_end", c, b.n, DT_EINPUT, "'k.str'", "past the end");
    RESET(); put_u64(c + b.key_str_len_at, UINT64_MAX);
    expect_corrupt("corrupt_string_len_huge", c, b.n, DT_EINPUT, "'k.str'", "string length");
    RESET(); put_u32(c + b.key_str_len_at - 4, 13);
    expect_corrupt("corrupt_value_type", c, b.n, DT_EINPUT, "'k.str'", "value type 13");
    {   // the array "k.arr": type (4) elem type (4) count (8) after its key
        size_t at = find(b.p, b.n, "k.arr", 5) + 5 + 8;
        RESET(); put_u64(c + at, 1ull << 60);
        expect_corrupt("corrupt_array_count", c, b.n, DT_EINPUT, "'k.arr'", "past the end");
        RESET(); put_u32(c + at - 4, 9);
        expect_corrupt("corrupt_nested_array", c, b.n, DT_EINPUT, "'k.arr'", "element type");
    }
    // Tensor infos: n_dims (4) ne (8 each) type (4) offset (8).
    size_t t1_type = b.t1_info_at + 4 + 16, t1_off = t1_type + 4;
    size_t t2_type = b.t2_info_at + 4 + 8, t2_off = t2_type + 4;
    RESET(); put_u32(c + b.t1_info_at, 5);
    expect_corrupt("corrupt_too_many_dims", c, b.n, DT_EINPUT, "'t1'", "dimensions");
    RESET(); put_u64(c + b.t1_info_at + 4, (uint64_t)-3);
    expect_corrupt("corrupt_negative_dim", c, b.n, DT_EINPUT, "'t1'", "negative");
    RESET(); put_u64(c + b.t1_info_at + 4, 1ull << 62); put_u64(c + b.t1_info_at + 12, 1ull << 62);
    expect_corrupt("corrupt_dims_overflow", c, b.n, DT_EINPUT, "'t1'", "too large");
    {   // The fuzzer's case: an empty tensor (ne1 = 0, so 0 bytes) whose other dimensions multiply past
        // int64 is refused; an empty one whose count fits is 0 bytes.
        size_t nb = 1;
        bool big = dt_ggml_nbytes(DT_GGML_F32, 3, (int64_t[]){1ll << 40, 0, 1ll << 40}, &nb);
        bool ok = dt_ggml_nbytes(DT_GGML_F32, 3, (int64_t[]){1ll << 40, 0, 1ll << 20}, &nb);
        TEST_CHECK("nbytes_empty_dims_overflow", !big && ok && nb == 0, "refused %d, accepted %d, %zu bytes",
                   !big, ok, nb);
    }
    RESET(); put_u32(c + t1_type, 200);
    expect_corrupt("corrupt_unknown_type", c, b.n, DT_EINPUT, "unsupported type 200", "'t1'");
    RESET(); put_u32(c + t1_type, 4); // Q4_2, removed from ggml
    expect_corrupt("corrupt_removed_type", c, b.n, DT_EINPUT, "unsupported type 4", "'t1'");
    RESET(); put_u64(c + t2_off, 4096);
    expect_corrupt("corrupt_offset_past_end", c, b.n, DT_EINPUT, "'t2'", "past the end");
    RESET(); put_u64(c + t2_off, UINT64_MAX - 31);
    expect_corrupt("corrupt_offset_huge", c, b.n, DT_EINPUT, "'t2'", "past the end");
    RESET(); put_u64(c + t2_off, 8);
    expect_corrupt("corrupt_misaligned_offset", c, b.n, DT_EINPUT, "'t2'", "alignment");
    RESET(); put_u64(c + t2_off, 0);
    expect_corrupt("corrupt_overlap", c, b.n, DT_EINPUT, "overlaps", "'t1'");
    RESET(); memcpy(c + b.t2_info_at - 2, "t1", 2);
    expect_corrupt("corrupt_duplicate_tensor", c, b.n, DT_EINPUT, "'t1'", "more than once");
    RESET(); memcpy(c + find(b.p, b.n, "k.arr", 5), "k.str", 5);
    expect_corrupt("corrupt_duplicate_key", c, b.n, DT_EINPUT, "'k.str'", "more than once");
    {   // general.alignment of the wrong type and a non-power of two ("k.str" renamed: 5 bytes each)
        RESET(); memcpy(c + find(b.p, b.n, "k.arr", 5) - 8, "\x11\0\0\0\0\0\0\0", 8);
        expect_corrupt("corrupt_key_length", c, b.n, DT_EINPUT, NULL, NULL);
    }

    // Valid for the reader, but not as we write them: dt_gguf_check_spec catches these.
    size_t data_off = b.n - 64; // t1 (32 bytes) + t2 (12 + 20 padding)
    RESET(); c[data_off + 32 + 12] = 1;
    expect_spec_fail("spec_nonzero_padding", c, b.n, "'t2'");
    RESET(); c[data_off - 1] = 0xff;
    expect_spec_fail("spec_nonzero_header_padding", c, b.n, "padding");
    RESET(); memcpy(c + b.n, c + b.n - 32, 32); put_u64(c + t2_off, 64); // a gap before t2
    expect_spec_fail("spec_gap", c, b.n + 32, "'t2'");
    RESET(); memset(c + b.n, 0, 32);
    expect_spec_fail("spec_trailing_bytes", c, b.n + 32, "expected");
    RESET(); put_u32(c + 4, 2);
    expect_spec_fail("spec_version_2", c, b.n, "version 2");
    RESET(); put_u64(c + t1_off, 32); put_u64(c + t2_off, 0);
    memcpy(c + data_off, b.p + data_off + 32, 32); memcpy(c + data_off + 32, b.p + data_off, 32);
    expect_spec_fail("spec_out_of_order", c, b.n, "'t1'");

    // Random byte corruption: never a crash, and either a clean open or DT_EINPUT.
    unsigned seed = 12345;
    int wrong = 0;
    for (int trial = 0; trial < 300; trial++) {
        RESET();
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % (b.n - 64); // the header part
            seed = seed * 1103515245u + 12345u;
            c[at] = (uint8_t)(seed >> 16);
        }
        spit(tmp("fuzz.gguf"), c, b.n);
        dt_gguf_file *f = NULL;
        int st = dt_gguf_open(&ctx, tmp("fuzz.gguf"), &f);
        if (st != DT_OK && st != DT_EINPUT) wrong++;
        dt_gguf_close(f);
    }
    TEST_CHECK("corrupt_random_bytes", wrong == 0, "%d opens gave a status other than OK/EINPUT", wrong);
#undef RESET
    free(c);
    free(b.p);

    dt_gguf_file *f = NULL;
    int st = dt_gguf_open(&ctx, tmp("does_not_exist.gguf"), &f);
    TEST_CHECK("missing_file", st == DT_EINPUT && strstr(ctx.msg, "does_not_exist.gguf"), "status %d: %s", st, ctx.msg);
    spit(tmp("empty.gguf"), (const uint8_t *)"", 0);
    st = dt_gguf_open(&ctx, tmp("empty.gguf"), &f);
    TEST_CHECK("empty_file", st == DT_EINPUT && strstr(ctx.msg, "empty.gguf"), "status %d: %s", st, ctx.msg);
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dt_test_gguf.XXXXXX");
    if (!mkdtemp(tmpdir)) { TEST_FAIL("setup", "mkdtemp failed"); TEST_EXIT(); }
    test_exact_bytes();
    test_roundtrip();
    test_writer_errors();
    test_corrupt();
    remove_tmpdir();
    TEST_EXIT();
}

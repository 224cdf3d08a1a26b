// safetensors writer and reader: exact bytes against the reference layout, round trips, shards, and a
// corpus of corrupt files that must each fail with DT_EINPUT and a message naming file and tensor.
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include "autograd/context.h"
#include "models/atomic_file.h"
#include "models/safetensors.h"
#include "models/safetensors_write.h"
#include "tests/test_util.h"

static char g_dir[64];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static const char *tmp(const char *name) {
    static char buf[8][256];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 256, "%s/%s", g_dir, name);
    return b;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

// A raw file: 8-byte length (hlen, or the header's length when hlen is -1), header text, data bytes.
static void write_raw(const char *path, const char *header, long long hlen, const void *data, size_t ndata) {
    size_t h = strlen(header);
    uint64_t len = hlen < 0 ? h : (uint64_t)hlen;
    unsigned char *b = malloc(8 + h + ndata + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(len >> (8 * i));
    memcpy(b + 8, header, h);
    if (ndata) memcpy(b + 8 + h, data, ndata);
    write_all(path, b, 8 + h + ndata);
    free(b);
}

static bool file_has_bytes(const char *path, const char *header, const void *data, size_t ndata) {
    size_t n, h = strlen(header);
    unsigned char *b = read_all(path, &n);
    bool ok = b && n == 8 + h + ndata;
    for (int i = 0; ok && i < 8; i++) ok = b[i] == (unsigned char)((uint64_t)h >> (8 * i));
    ok = ok && !memcmp(b + 8, header, h) && (!ndata || !memcmp(b + 8 + h, data, ndata));
    free(b);
    return ok;
}

static bool same_file(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *x = read_all(a, &na), *y = read_all(b, &nb);
    bool ok = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return ok;
}

// ---- exact layout -----------------------------------------------------------------------------------

// Byte vectors from the reference implementation's own tests (safetensors/src/tensor.rs), spelled as
// their header text: one F32 tensor unpadded, one padded with spaces, and empty files.
static void test_reference_bytes(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    float v[6] = {0, 1, 2, 3, 4, 5};
    dt_st_writer *w;
    dt_st_writer_init(&ctx, &w);
    dt_st_writer_add(&ctx, w, "attn.0", DT_F32, 3, (int64_t[]){1, 2, 3}, v);
    int rc = dt_st_writer_write(&ctx, w, tmp("ref1.safetensors"));
    dt_st_writer_free(w);
    TEST_CHECK("reference bytes: attn.0 F32 [1,2,3]", !rc && file_has_bytes(tmp("ref1.safetensors"),
               "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", v, 24), "%s", ctx.msg);

    dt_st_writer_init(&ctx, &w);
    dt_st_writer_add(&ctx, w, "attn0", DT_F32, 4, (int64_t[]){1, 1, 2, 3}, v);
    rc = dt_st_writer_write(&ctx, w, tmp("ref2.safetensors"));
    dt_st_writer_free(w);
    TEST_CHECK("reference bytes: header padded to 8 with spaces", !rc && file_has_bytes(tmp("ref2.safetensors"),
               "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ", v, 24),
               "%s", ctx.msg);

    dt_st_writer_init(&ctx, &w);
    rc = dt_st_writer_write(&ctx, w, tmp("ref3.safetensors"));
    TEST_CHECK("reference bytes: empty file", !rc && file_has_bytes(tmp("ref3.safetensors"), "{}      ", NULL, 0),
               "%s", ctx.msg);
    dt_st_writer_set_metadata(&ctx, w, "framework", "pt");
    rc = dt_st_writer_write(&ctx, w, tmp("ref4.safetensors"));
    dt_st_writer_free(w);
    TEST_CHECK("reference bytes: metadata only", !rc && file_has_bytes(tmp("ref4.safetensors"),
               "{\"__metadata__\":{\"framework\":\"pt\"}}     ", NULL, 0), "%s", ctx.msg);
}

// Layout: dtype descending in the reference's order (F32 > I32 > BF16 > F16), then name; metadata
// first with sorted keys; names JSON-escaped like serde_json.
static void test_layout_order(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    uint16_t h[2] = {0x3c00, 0x4000};
    uint16_t bf[1] = {0x3f80};
    int32_t i32[1] = {7};
    float f[2] = {1.5f, -2.0f};
    dt_st_writer *w;
    dt_st_writer_init(&ctx, &w);
    dt_st_writer_add(&ctx, w, "a", DT_F16, 1, (int64_t[]){2}, h);
    dt_st_writer_add(&ctx, w, "z", DT_F32, 1, (int64_t[]){1}, &f[0]);
    dt_st_writer_add(&ctx, w, "m", DT_BF16, 1, (int64_t[]){1}, bf);
    dt_st_writer_add(&ctx, w, "b", DT_I32, 0, NULL, i32);
    dt_st_writer_add(&ctx, w, "b2\"\n", DT_F32, 2, (int64_t[]){1, 1}, &f[1]);
    dt_st_writer_set_metadata(&ctx, w, "z", "1");
    dt_st_writer_set_metadata(&ctx, w, "format", "np");
    dt_st_writer_set_metadata(&ctx, w, "format", "pt");
    int rc = dt_st_writer_write(&ctx, w, tmp("order.safetensors"));
    dt_st_writer_free(w);
    unsigned char data[18];
    memcpy(data, &f[1], 4);
    memcpy(data + 4, &f[0], 4);
    memcpy(data + 8, i32, 4);
    memcpy(data + 12, bf, 2);
    memcpy(data + 14, h, 4);
    TEST_CHECK("layout: dtype order, then name; metadata first and sorted", !rc &&
               file_has_bytes(tmp("order.safetensors"),
                              "{\"__metadata__\":{\"format\":\"pt\",\"z\":\"1\"},"
                              "\"b2\\\"\\n\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]},"
                              "\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                              "\"b\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[8,12]},"
                              "\"m\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[12,14]},"
                              "\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[14,18]}}   ",
                              data, 18), "%s", ctx.msg);
}

// ---- round trip -------------------------------------------------------------------------------------

static int fill_ramp(dt_ctx *ctx, void *user, void *dst, size_t nbytes) {
    (void)ctx;
    const float *base = user;
    memcpy(dst, base, nbytes);
    return DT_OK;
}

static int fill_fail(dt_ctx *ctx, void *user, void *dst, size_t nbytes) {
    (void)user; (void)dst; (void)nbytes;
    return dt_fail(ctx, DT_EIO, "source went away");
}

static void test_round_trip(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    enum { R = 5, C = 7 };
    float wf[R * C], scalar = 3.25f;
    uint16_t wb[R * C], wh[C];
    int32_t ids[3] = {1, -2, 3};
    for (int i = 0; i < R * C; i++) {
        wf[i] = (float)i * 0.37f - 4.0f;
        wb[i] = dt_f32_to_bf16(wf[i]);
    }
    for (int i = 0; i < C; i++) wh[i] = dt_f32_to_f16((float)i / 8);
    dt_st_writer *w;
    dt_st_writer_init(&ctx, &w);
    dt_st_writer_set_metadata(&ctx, w, "format", "pt");
    int rc = dt_st_writer_add(&ctx, w, "model.layers.0.self_attn.q_proj.weight", DT_F32, 2, (int64_t[]){R, C}, wf);
    rc |= dt_st_writer_add(&ctx, w, "w.bf16", DT_BF16, 2, (int64_t[]){R, C}, wb);
    rc |= dt_st_writer_add(&ctx, w, "w.f16", DT_F16, 1, (int64_t[]){C}, wh);
    rc |= dt_st_writer_add(&ctx, w, "ids", DT_I32, 1, (int64_t[]){3}, ids);
    rc |= dt_st_writer_add(&ctx, w, "scalar", DT_F32, 0, NULL, &scalar);
    rc |= dt_st_writer_add(&ctx, w, "empty", DT_F32, 2, (int64_t[]){0, 4}, NULL);
    rc |= dt_st_writer_add_fn(&ctx, w, "filled", DT_F32, 1, (int64_t[]){C}, fill_ramp, wf);
    TEST_CHECK("writer: add", rc == DT_OK, "%s", ctx.msg);
    int dup = dt_st_writer_add(&ctx, w, "ids", DT_I32, 1, (int64_t[]){3}, ids);
    TEST_CHECK("writer: duplicate name refused", dup == DT_EINPUT && strstr(ctx.msg, "'ids'"), "%d %s", dup, ctx.msg);
    rc = dt_st_writer_write(&ctx, w, tmp("rt.safetensors"));
    TEST_CHECK("writer: write", rc == DT_OK, "%s", ctx.msg);
    rc = dt_st_writer_write(&ctx, w, tmp("rt2.safetensors"));
    TEST_CHECK("writer: same entries twice give identical bytes",
               rc == DT_OK && same_file(tmp("rt.safetensors"), tmp("rt2.safetensors")), "%s", ctx.msg);
    dt_st_writer_free(w);

    dt_safetensors *st;
    rc = dt_st_open(&ctx, tmp("rt.safetensors"), &st);
    TEST_CHECK("reader: open written file", rc == DT_OK, "%s", ctx.msg);
    if (rc) return;
    TEST_CHECK("reader: count and metadata", dt_st_count(st) == 7 && dt_st_shard_count(st) == 1 &&
               dt_st_metadata(st, "format") && !strcmp(dt_st_metadata(st, "format"), "pt") &&
               !dt_st_metadata(st, "nope"), "count %zu", dt_st_count(st));
    const dt_st_tensor *t = dt_st_find(st, "model.layers.0.self_attn.q_proj.weight");
    TEST_CHECK("reader: find F32", t && t->dtype == DT_F32 && t->ndim == 2 && t->shape[0] == R && t->shape[1] == C &&
               t->nbytes == sizeof wf && !memcmp(t->data, wf, sizeof wf) && dt_st_aligned(t), "mismatch");
    t = dt_st_find(st, "scalar");
    TEST_CHECK("reader: scalar", t && t->ndim == 0 && t->nbytes == 4 && !memcmp(t->data, &scalar, 4), "mismatch");
    t = dt_st_find(st, "empty");
    TEST_CHECK("reader: zero-size tensor", t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 4 &&
               t->nbytes == 0, "mismatch");
    t = dt_st_find(st, "ids");
    TEST_CHECK("reader: I32", t && t->st_dtype == DT_ST_I32 && t->dtype == DT_I32 && !memcmp(t->data, ids, 12), "mismatch");
    t = dt_st_find(st, "filled");
    TEST_CHECK("reader: tensor from a fill function", t && !memcmp(t->data, wf, C * 4), "mismatch");
    TEST_CHECK("reader: absent name", dt_st_find(st, "nope") == NULL && dt_st_find(st, "") == NULL, "found");

    float got[R * C];
    rc = dt_st_read_f32(&ctx, st, "w.bf16", got, 2, (int64_t[]){R, C});
    float worst = 0;
    for (int i = 0; i < R * C; i++) worst = fmaxf(worst, fabsf(got[i] - dt_bf16_to_f32(wb[i])));
    TEST_CHECK("read_f32: BF16 converted", rc == DT_OK && worst == 0, "rc %d worst %g %s", rc, worst, ctx.msg);
    rc = dt_st_read_f32(&ctx, st, "w.f16", got, 1, (int64_t[]){C});
    TEST_CHECK("read_f32: F16 converted", rc == DT_OK && got[3] == 3.0f / 8, "%s", ctx.msg);
    uint16_t gb[R * C];
    rc = dt_st_read_as(&ctx, st, "model.layers.0.self_attn.q_proj.weight", DT_BF16, gb, 2, (int64_t[]){R, C});
    TEST_CHECK("read_as: F32 to BF16", rc == DT_OK && !memcmp(gb, wb, sizeof wb), "%s", ctx.msg);
    rc = dt_st_read_f32(&ctx, st, "w.bf16", got, 2, (int64_t[]){C, R});
    TEST_CHECK("read_f32: shape mismatch names file, tensor and both shapes", rc == DT_EINPUT &&
               strstr(ctx.msg, "rt.safetensors") && strstr(ctx.msg, "'w.bf16'") && strstr(ctx.msg, "[5, 7]") &&
               strstr(ctx.msg, "expected [7, 5]"), "%d %s", rc, ctx.msg);
    rc = dt_st_read_f32(&ctx, st, "missing.weight", got, 1, (int64_t[]){1});
    TEST_CHECK("read_f32: absent tensor named", rc == DT_EINPUT && strstr(ctx.msg, "'missing.weight'") &&
               strstr(ctx.msg, "rt.safetensors"), "%s", ctx.msg);
    rc = dt_st_read_f32(&ctx, st, "ids", got, 1, (int64_t[]){3});
    TEST_CHECK("read_f32: integer tensor refused", rc == DT_EINPUT && strstr(ctx.msg, "'ids'"), "%s", ctx.msg);

    // Re-writing what was read (data straight from the mapping) reproduces the file byte for byte.
    dt_st_writer_init(&ctx, &w);
    dt_st_writer_set_metadata(&ctx, w, "format", dt_st_metadata(st, "format"));
    for (size_t i = 0; i < dt_st_count(st); i++) {
        const dt_st_tensor *x = dt_st_at(st, i);
        dt_st_writer_add(&ctx, w, x->name, x->dtype, x->ndim, x->shape, x->data);
    }
    rc = dt_st_writer_write(&ctx, w, tmp("rt3.safetensors"));
    dt_st_writer_free(w);
    TEST_CHECK("round trip: re-written file is byte-identical",
               rc == DT_OK && same_file(tmp("rt.safetensors"), tmp("rt3.safetensors")), "%s", ctx.msg);
    dt_st_close(st);

    // A failing fill function aborts the write: the old file stays, no temporary is left behind.
    dt_st_writer_init(&ctx, &w);
    dt_st_writer_add_fn(&ctx, w, "x", DT_F32, 1, (int64_t[]){4}, fill_fail, NULL);
    rc = dt_st_writer_write(&ctx, w, tmp("rt.safetensors"));
    dt_st_writer_free(w);
    int leftovers = 0;
    DIR *d = opendir(g_dir);
    for (struct dirent *e; (e = readdir(d));) leftovers += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    TEST_CHECK("writer: failed write leaves the old file and no temporary", rc == DT_EIO &&
               strstr(ctx.msg, "'x'") && strstr(ctx.msg, "source went away") && leftovers == 0 &&
               same_file(tmp("rt.safetensors"), tmp("rt2.safetensors")), "%d %s leftovers %d", rc, ctx.msg, leftovers);
}

// Files from other writers need not be padded or listed in offset order; data may be unaligned.
static void test_unaligned_and_unordered(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    float v[3] = {1.0f, -2.5f, 3.75f};
    uint16_t hb[2] = {dt_f32_to_bf16(0.5f), dt_f32_to_bf16(-8.0f)};
    unsigned char data[16];
    memcpy(data, hb, 4);
    memcpy(data + 4, v, 12);
    // Header length 87 is odd, so the data buffer (and every tensor) starts at an odd address.
    const char *hdr = "{\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]},"
                      "\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    write_raw(tmp("odd.safetensors"), hdr, -1, data, 16);
    dt_safetensors *st;
    int rc = dt_st_open(&ctx, tmp("odd.safetensors"), &st);
    TEST_CHECK("reader: unpadded header, entries out of offset order", rc == DT_OK, "%s", ctx.msg);
    if (rc) return;
    const dt_st_tensor *t0 = dt_st_at(st, 0), *b = dt_st_find(st, "b");
    float got[3] = {0};
    rc = dt_st_read_f32(&ctx, st, "b", got, 1, (int64_t[]){3});
    float gh[2] = {0};
    int rc2 = dt_st_read_f32(&ctx, st, "a", gh, 1, (int64_t[]){2});
    TEST_CHECK("reader: file order is offset order", t0 && !strcmp(t0->name, "a"), "first %s", t0 ? t0->name : "-");
    TEST_CHECK("reader: unaligned data is flagged and read by copy", b && !dt_st_aligned(b) && rc == DT_OK &&
               rc2 == DT_OK && !memcmp(got, v, 12) && gh[0] == 0.5f && gh[1] == -8.0f, "%s", ctx.msg);
    dt_st_close(st);
}

// ---- shards -----------------------------------------------------------------------------------------

#define INDEX_HEAD "{\n  \"metadata\": {\n    \"total_size\": 384\n  },\n  \"weight_map\": {\n" \
                   "    \"model.layers.0.mlp.up_proj.weight\": \"model-00001-of-00003.safetensors\",\n"

static void test_shards(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    enum { N = 6, E = 16 };
    float data[N][E];
    char names[N][64];
    dt_st_writer *w;
    dt_st_writer_init(&ctx, &w);
    dt_st_writer_set_metadata(&ctx, w, "format", "pt");
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < E; j++) data[i][j] = (float)(i * 100 + j);
        snprintf(names[i], sizeof names[i], "model.layers.%d.mlp.up_proj.weight", i);
        dt_st_writer_add(&ctx, w, names[i], DT_F32, 2, (int64_t[]){4, 4}, data[i]);
    }
    mkdir(tmp("sharded"), 0755);
    mkdir(tmp("single"), 0755);
    int rc = dt_st_writer_write_sharded(&ctx, w, tmp("sharded"), 2 * E * 4); // two tensors a shard
    int rc1 = dt_st_writer_write_sharded(&ctx, w, tmp("single"), 1 << 20);
    dt_st_writer_free(w);
    TEST_CHECK("sharded write", rc == DT_OK && rc1 == DT_OK, "%s", ctx.msg);

    size_t n;
    char *idx = (char *)read_all(tmp("sharded/model.safetensors.index.json"), &n);
    if (idx) idx[n] = 0;
    TEST_CHECK("sharded write: index as transformers writes it", idx &&
               !strncmp(idx, INDEX_HEAD, strlen(INDEX_HEAD)) &&
               strstr(idx, "\"model.layers.5.mlp.up_proj.weight\": \"model-00003-of-00003.safetensors\"\n  }\n}\n"),
               "%s", idx ? idx : "(missing)");
    free(idx);

    dt_safetensors *st;
    rc = dt_st_open(&ctx, tmp("sharded"), &st);
    TEST_CHECK("sharded read: open folder", rc == DT_OK, "%s", ctx.msg);
    if (!rc) {
        bool ok = dt_st_count(st) == N && dt_st_shard_count(st) == 3 &&
                  strstr(dt_st_shard_path(st, 2), "model-00003-of-00003.safetensors") &&
                  !strcmp(dt_st_metadata(st, "format"), "pt");
        for (int i = 0; i < N && ok; i++) {
            const dt_st_tensor *t = dt_st_find(st, names[i]);
            ok = t && t->shard == i / 2 && !memcmp(t->data, data[i], sizeof data[i]);
        }
        TEST_CHECK("sharded read: every tensor from its shard", ok, "count %zu shards %d", dt_st_count(st),
                   dt_st_shard_count(st));
        dt_st_close(st);
    }
    rc = dt_st_open(&ctx, tmp("sharded/model.safetensors.index.json"), &st);
    TEST_CHECK("sharded read: open index file", rc == DT_OK && dt_st_count(st) == N, "%s", ctx.msg);
    if (!rc) dt_st_close(st);
    rc = dt_st_open(&ctx, tmp("single"), &st);
    TEST_CHECK("sharded write: one shard is plain model.safetensors", rc == DT_OK && dt_st_count(st) == N &&
               access(tmp("single/model.safetensors.index.json"), F_OK) != 0, "%s", ctx.msg);
    if (!rc) dt_st_close(st);
}

// ---- corrupt files ----------------------------------------------------------------------------------

// Opens path and checks the status and that the message holds each non-NULL string.
static void expect_fail(const char *test, const char *path, int want, const char *s1, const char *s2,
                        const char *s3) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *st = (dt_safetensors *)&ctx; // must be reset to NULL on failure
    int rc = dt_st_open(&ctx, path, &st);
    bool ok = rc == want && st == NULL && (!s1 || strstr(ctx.msg, s1)) && (!s2 || strstr(ctx.msg, s2)) &&
              (!s3 || strstr(ctx.msg, s3));
    TEST_CHECK(test, ok, "status %d (want %d), message: %s", rc, want, ctx.msg);
    if (!rc) dt_st_close(st);
}

#define ENTRY(name, dt, shape, b, e) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void corrupt(const char *file, const char *header, size_t ndata) {
    static const unsigned char zeros[256];
    write_raw(tmp(file), header, -1, zeros, ndata);
}

static void test_corrupt(void) {
    // A good two-tensor file to truncate.
    float v[8] = {0};
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_st_writer *w;
    dt_st_writer_init(&ctx, &w);
    dt_st_writer_add(&ctx, w, "alpha", DT_F32, 1, (int64_t[]){4}, v);
    dt_st_writer_add(&ctx, w, "beta", DT_F32, 1, (int64_t[]){4}, v + 4);
    dt_st_writer_write(&ctx, w, tmp("good.safetensors"));
    dt_st_writer_free(w);
    size_t n;
    unsigned char *good = read_all(tmp("good.safetensors"), &n);
    write_all(tmp("truncated.safetensors"), good, n - 4);
    expect_fail("corrupt: truncated data names file and tensor", tmp("truncated.safetensors"), DT_EINPUT,
                "truncated.safetensors", "'beta'", "past the end");
    write_all(tmp("tiny.safetensors"), good, 5);
    expect_fail("corrupt: shorter than the length field", tmp("tiny.safetensors"), DT_EINPUT, "tiny.safetensors",
                "too short", NULL);
    write_all(tmp("headcut.safetensors"), good, 40);
    expect_fail("corrupt: file ends inside the header", tmp("headcut.safetensors"), DT_EINPUT,
                "headcut.safetensors", "runs past the end", NULL);
    free(good);

    write_raw(tmp("hlen_past.safetensors"), "{}", 1000, NULL, 0);
    expect_fail("corrupt: header length past end", tmp("hlen_past.safetensors"), DT_EINPUT, "hlen_past.safetensors",
                "header length 1000", NULL);
    write_raw(tmp("hlen_huge.safetensors"), "{}", 100000001, NULL, 0);
    expect_fail("corrupt: header length over 100 MB", tmp("hlen_huge.safetensors"), DT_EINPUT,
                "hlen_huge.safetensors", "limit", NULL);
    write_raw(tmp("hlen_max.safetensors"), "{}", -2 /* 2^64 - 2 */ & 0x7fffffffffffffffLL, NULL, 0);
    expect_fail("corrupt: header length near 2^63", tmp("hlen_max.safetensors"), DT_EINPUT, "hlen_max.safetensors",
                "limit", NULL);
    corrupt("notjson.safetensors", "{\"a\": nope}", 0);
    expect_fail("corrupt: header not JSON", tmp("notjson.safetensors"), DT_EINPUT, "notjson.safetensors",
                "not valid JSON", NULL);
    corrupt("array.safetensors", "[1, 2, 3]", 0);
    expect_fail("corrupt: header is a JSON array", tmp("array.safetensors"), DT_EINPUT, "array.safetensors",
                "array, expected an object", NULL);
    corrupt("overlap.safetensors", "{" ENTRY("w1", "F32", "[4]", 0, 16) "," ENTRY("w2", "F32", "[4]", 8, 24) "}", 24);
    expect_fail("corrupt: overlapping offsets name both tensors", tmp("overlap.safetensors"), DT_EINPUT,
                "overlap.safetensors", "'w2'", "overlap tensor 'w1'");
    corrupt("same.safetensors", "{" ENTRY("w1", "F32", "[4]", 0, 16) "," ENTRY("w2", "F32", "[4]", 0, 16) "}", 16);
    expect_fail("corrupt: two tensors on the same bytes", tmp("same.safetensors"), DT_EINPUT, "same.safetensors",
                "'w2'", "overlap");
    corrupt("gap.safetensors", "{" ENTRY("w1", "F32", "[4]", 0, 16) "," ENTRY("w2", "F32", "[4]", 20, 36) "}", 36);
    expect_fail("corrupt: gap between tensors", tmp("gap.safetensors"), DT_EINPUT, "gap.safetensors", "'w2'", "gap");
    corrupt("gap0.safetensors", "{" ENTRY("w1", "F32", "[4]", 8, 24) "}", 24);
    expect_fail("corrupt: gap before the first tensor", tmp("gap0.safetensors"), DT_EINPUT, "gap0.safetensors",
                "'w1'", "gap");
    corrupt("trailing.safetensors", "{" ENTRY("w1", "F32", "[4]", 0, 16) "}", 20);
    expect_fail("corrupt: trailing bytes", tmp("trailing.safetensors"), DT_EINPUT, "trailing.safetensors",
                "4 trailing bytes", "'w1'");
    corrupt("trailing0.safetensors", "{}", 3);
    expect_fail("corrupt: bytes after an empty header", tmp("trailing0.safetensors"), DT_EINPUT,
                "trailing0.safetensors", "3 trailing bytes", NULL);
    corrupt("size.safetensors", "{" ENTRY("w1", "F16", "[2,3]", 0, 16) "}", 16);
    expect_fail("corrupt: dtype x shape disagrees with offsets", tmp("size.safetensors"), DT_EINPUT,
                "size.safetensors", "'w1'", "needs 12 bytes");
    corrupt("neg.safetensors", "{" ENTRY("w1", "F32", "[-1,4]", 0, 16) "}", 16);
    expect_fail("corrupt: negative dimension", tmp("neg.safetensors"), DT_EINPUT, "neg.safetensors", "'w1'",
                "shape[0] is negative");
    corrupt("fshape.safetensors", "{" ENTRY("w1", "F32", "[2.5]", 0, 8) "}", 8);
    expect_fail("corrupt: fractional dimension", tmp("fshape.safetensors"), DT_EINPUT, "fshape.safetensors", "'w1'",
                "shape[0]");
    corrupt("ovf.safetensors", "{" ENTRY("w1", "F32", "[4294967296,4294967296]", 0, 0) "}", 0);
    expect_fail("corrupt: shape overflows 64 bits", tmp("ovf.safetensors"), DT_EINPUT, "ovf.safetensors", "'w1'",
                "overflow");
    corrupt("ovf2.safetensors", "{" ENTRY("w1", "F32", "[4611686018427387904]", 0, 0) "}", 0);
    expect_fail("corrupt: byte size overflows 64 bits", tmp("ovf2.safetensors"), DT_EINPUT, "ovf2.safetensors",
                "'w1'", "overflow");
    // An empty tensor (a zero dimension) whose other dimensions multiply past int64: its byte size is 0
    // and matches the offsets, so only the shape check can refuse it.
    corrupt("ovf0.safetensors", "{" ENTRY("w1", "F32", "[4294967296,0,4294967296]", 0, 0) "}", 0);
    expect_fail("corrupt: empty shape whose other dimensions overflow", tmp("ovf0.safetensors"), DT_EINPUT,
                "ovf0.safetensors", "'w1'", "overflow");
    corrupt("dtype.safetensors", "{" ENTRY("w1", "Q4_K", "[4]", 0, 16) "}", 16);
    expect_fail("corrupt: unknown dtype", tmp("dtype.safetensors"), DT_EINPUT, "dtype.safetensors", "'w1'",
                "unknown dtype 'Q4_K'");
    corrupt("f64.safetensors", "{" ENTRY("w1", "F64", "[2]", 0, 16) "}", 16);
    expect_fail("unsupported: F64 named as such", tmp("f64.safetensors"), DT_EUNSUPPORTED, "f64.safetensors", "'w1'",
                "F64");
    corrupt("dims.safetensors", "{" ENTRY("w1", "F32", "[1,1,1,1,1]", 0, 4) "}", 4);
    expect_fail("unsupported: 5 dimensions", tmp("dims.safetensors"), DT_EUNSUPPORTED, "dims.safetensors", "'w1'",
                "5 dimensions");
    corrupt("order.safetensors", "{" ENTRY("w1", "F32", "[0]", 16, 0) "}", 0);
    expect_fail("corrupt: offsets out of order (end < begin)", tmp("order.safetensors"), DT_EINPUT,
                "order.safetensors", "'w1'", "end before they begin");
    corrupt("past.safetensors", "{" ENTRY("w1", "F32", "[4]", 0, 16) "}", 8);
    expect_fail("corrupt: offsets past the data", tmp("past.safetensors"), DT_EINPUT, "past.safetensors", "'w1'",
                "past the end");
    corrupt("nooff.safetensors", "{\"w1\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
    expect_fail("corrupt: missing data_offsets", tmp("nooff.safetensors"), DT_EINPUT, "nooff.safetensors", "'w1'",
                "data_offsets");
    corrupt("off3.safetensors", "{\"w1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4);
    expect_fail("corrupt: three data_offsets", tmp("off3.safetensors"), DT_EINPUT, "off3.safetensors", "'w1'",
                "data_offsets");
    corrupt("noshape.safetensors", "{\"w1\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4);
    expect_fail("corrupt: shape not an array", tmp("noshape.safetensors"), DT_EINPUT, "noshape.safetensors", "'w1'",
                "shape");
    corrupt("dtnum.safetensors", "{\"w1\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_fail("corrupt: dtype not a string", tmp("dtnum.safetensors"), DT_EINPUT, "dtnum.safetensors", "'w1'",
                "dtype");
    corrupt("entry.safetensors", "{\"w1\":[1,2]}", 0);
    expect_fail("corrupt: entry not an object", tmp("entry.safetensors"), DT_EINPUT, "entry.safetensors", "'w1'",
                "expected an object");
    corrupt("meta.safetensors", "{\"__metadata__\":{\"format\":1}}", 0);
    expect_fail("corrupt: __metadata__ value not a string", tmp("meta.safetensors"), DT_EINPUT, "meta.safetensors",
                "'format'", NULL);
    corrupt("meta2.safetensors", "{\"__metadata__\":[\"pt\"]}", 0);
    expect_fail("corrupt: __metadata__ not an object", tmp("meta2.safetensors"), DT_EINPUT, "meta2.safetensors",
                "__metadata__", NULL);
    corrupt("dupkey.safetensors", "{" ENTRY("w1", "F32", "[1]", 0, 4) "," ENTRY("w1", "F32", "[1]", 4, 8) "}", 8);
    expect_fail("corrupt: duplicate tensor name", tmp("dupkey.safetensors"), DT_EINPUT, "dupkey.safetensors",
                "w1", NULL);
    expect_fail("missing file", tmp("nothere.safetensors"), DT_EINPUT, "nothere.safetensors", "cannot open", NULL);
    mkdir(tmp("emptydir"), 0755);
    expect_fail("folder without model files", tmp("emptydir"), DT_EINPUT, "emptydir", "model.safetensors", NULL);

    // Byte flips and truncations of a good file: any outcome but a crash or a wrong status is fine.
    good = read_all(tmp("good.safetensors"), &n);
    int bad = 0, tried = 0;
    for (size_t cut = 0; cut < n; cut += 3) {
        write_all(tmp("fuzz.safetensors"), good, cut);
        dt_safetensors *st;
        int rc = dt_st_open(&ctx, tmp("fuzz.safetensors"), &st);
        bad += rc != DT_EINPUT;
        tried++;
        if (!rc) dt_st_close(st);
    }
    static const unsigned char flips[] = {0x01, 0x80, 0xff, '"', '}', '-', '9'};
    for (size_t i = 0; i < n - 32; i++)
        for (size_t f = 0; f < sizeof flips; f++) {
            unsigned char saved = good[i];
            good[i] = i < 8 ? good[i] ^ flips[f] : flips[f];
            write_all(tmp("fuzz.safetensors"), good, n);
            good[i] = saved;
            dt_safetensors *st;
            int rc = dt_st_open(&ctx, tmp("fuzz.safetensors"), &st);
            bad += rc != DT_OK && rc != DT_EINPUT && rc != DT_EUNSUPPORTED;
            bad += rc && !strstr(ctx.msg, "fuzz.safetensors");
            tried++;
            if (!rc) dt_st_close(st);
        }
    TEST_CHECK("corrupt: truncations and byte flips fail cleanly", bad == 0, "%d of %d gave a bad status/message",
               bad, tried);
    free(good);
}

static void write_index(const char *dir, const char *json) {
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_all(p, json, strlen(json));
}

static void test_corrupt_index(void) {
    mkdir(tmp("idx"), 0755);
    write_raw(tmp("idx/s1.safetensors"), "{" ENTRY("a", "F32", "[1]", 0, 4) "}", -1, "\0\0\0\0", 4);
    write_raw(tmp("idx/s2.safetensors"), "{" ENTRY("b", "F32", "[1]", 0, 4) "}", -1, "\0\0\0\0", 4);
    write_raw(tmp("idx/s3.safetensors"), "{" ENTRY("a", "F32", "[1]", 0, 4) "}", -1, "\0\0\0\0", 4);

    write_index(tmp("idx"), "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *st;
    int rc = dt_st_open(&ctx, tmp("idx"), &st);
    TEST_CHECK("index: minimal valid index", rc == DT_OK && dt_st_count(st) == 2, "%s", ctx.msg);
    if (!rc) dt_st_close(st);

    write_index(tmp("idx"), "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}");
    expect_fail("index: tensor listed but absent from its shard", tmp("idx"), DT_EINPUT,
                "missing tensor 'c' in shard 's2.safetensors' listed in", "model.safetensors.index.json", NULL);
    write_index(tmp("idx"), "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s9.safetensors\"}}");
    expect_fail("index: shard file missing", tmp("idx"), DT_EINPUT, "model.safetensors.index.json",
                "shard 's9.safetensors'", "'b'");
    write_index(tmp("idx"), "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}");
    expect_fail("index: tensor found in another shard than listed", tmp("idx"), DT_EINPUT,
                "missing tensor 'b' in shard 's1.safetensors'", NULL, NULL);
    write_index(tmp("idx"), "{\"weight_map\":{\"a\":\"s1.safetensors\",\"x\":\"s3.safetensors\"}}");
    expect_fail("index: same tensor in two shards", tmp("idx"), DT_EINPUT, "'a'", "s1.safetensors", "s3.safetensors");
    write_index(tmp("idx"), "{\"weight_map\": {\"a\": \"s1.safetensors\",");
    expect_fail("index: not JSON", tmp("idx"), DT_EINPUT, "model.safetensors.index.json", "not valid JSON", NULL);
    write_index(tmp("idx"), "{\"metadata\":{}}");
    expect_fail("index: no weight_map", tmp("idx"), DT_EINPUT, "model.safetensors.index.json", "weight_map", NULL);
    write_index(tmp("idx"), "{\"weight_map\":{\"a\":\"../good.safetensors\"}}");
    expect_fail("index: shard outside the folder refused", tmp("idx"), DT_EINPUT, "'a'", "same folder", NULL);
    write_index(tmp("idx"), "{\"weight_map\":{\"a\":3}}");
    expect_fail("index: shard name not a string", tmp("idx"), DT_EINPUT, "'a'", "model.safetensors.index.json", NULL);
    write_raw(tmp("idx/s2.safetensors"), "{" ENTRY("b", "F32", "[2]", 0, 4) "}", -1, "\0\0\0\0", 4);
    write_index(tmp("idx"), "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    expect_fail("index: a corrupt shard is named", tmp("idx"), DT_EINPUT, "s2.safetensors", "'b'", NULL);
}

// ---- atomic files -----------------------------------------------------------------------------------

static void test_atomic(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    int rc = dt_atomic_write(&ctx, tmp("no/such/dir/f.bin"), "x", 1);
    TEST_CHECK("atomic: folder missing is bad input", rc == DT_EINPUT && strstr(ctx.msg, "f.bin"), "%d %s", rc, ctx.msg);
    rc = dt_atomic_write(&ctx, tmp("a.bin"), "hello", 5);
    rc |= dt_atomic_write(&ctx, tmp("a.bin"), "bye", 3);
    size_t n;
    unsigned char *b = read_all(tmp("a.bin"), &n);
    struct stat sb;
    stat(tmp("a.bin"), &sb);
    TEST_CHECK("atomic: overwrite", rc == DT_OK && b && n == 3 && !memcmp(b, "bye", 3) && (sb.st_mode & 0777) == 0644,
               "%s", ctx.msg);
    free(b);
    dt_atomic_file f;
    rc = dt_atomic_open(&ctx, tmp("a.bin"), &f);
    rc |= dt_atomic_append(&ctx, &f, "partial", 7);
    bool tmp_exists = access(f.tmp_path, F_OK) == 0;
    dt_atomic_abort(&f);
    b = read_all(tmp("a.bin"), &n);
    int leftovers = 0;
    DIR *d = opendir(g_dir);
    for (struct dirent *e; (e = readdir(d));) leftovers += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    TEST_CHECK("atomic: abort keeps the old file and removes the temporary", rc == DT_OK && tmp_exists && n == 3 &&
               !memcmp(b, "bye", 3) && leftovers == 0, "leftovers %d", leftovers);
    free(b);
}

// ---- the fixture ------------------------------------------------------------------------------------

// The HF fixture was written by a converter that puts __metadata__ last; our writer puts it first as the
// safetensors library does, so only the data buffer and tensor list must match after a rewrite.
static void test_fixture(void) {
    const char *fx = dt_test_fixtures();
    if (!fx) {
        TEST_SKIP("fixture: stories260K-hf", "no ../shared/fixtures");
        return;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/stories260K-hf", fx);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *st;
    int rc = dt_st_open(&ctx, path, &st);
    TEST_CHECK("fixture: open stories260K-hf folder", rc == DT_OK && dt_st_count(st) == 47 &&
               !strcmp(dt_st_metadata(st, "format"), "pt"), "%s", ctx.msg);
    if (rc) return;
    dt_st_writer *w;
    dt_st_writer_init(&ctx, &w);
    dt_st_writer_set_metadata(&ctx, w, "format", "pt");
    for (size_t i = 0; i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i);
        dt_st_writer_add(&ctx, w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    rc = dt_st_writer_write(&ctx, w, tmp("fixture.safetensors"));
    dt_st_writer_free(w);
    dt_safetensors *st2;
    rc = rc ? rc : dt_st_open(&ctx, tmp("fixture.safetensors"), &st2);
    bool ok = rc == DT_OK && dt_st_count(st2) == dt_st_count(st);
    for (size_t i = 0; ok && i < dt_st_count(st); i++) {
        const dt_st_tensor *a = dt_st_at(st, i), *b = dt_st_at(st2, i);
        ok = !strcmp(a->name, b->name) && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes) &&
             (const char *)a->data - (const char *)dt_st_at(st, 0)->data ==
                 (const char *)b->data - (const char *)dt_st_at(st2, 0)->data;
    }
    TEST_CHECK("fixture: rewrite has the same tensor order, offsets and data", ok, "%s", ctx.msg);
    if (!rc) dt_st_close(st2);
    dt_st_close(st);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_test_st_XXXXXX");
    if (!mkdtemp(g_dir)) {
        TEST_FAIL("setup", "mkdtemp failed");
        TEST_EXIT();
    }
    test_reference_bytes();
    test_layout_order();
    test_round_trip();
    test_unaligned_and_unordered();
    test_shards();
    test_corrupt();
    test_corrupt_index();
    test_atomic();
    test_fixture();
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    TEST_EXIT();
}

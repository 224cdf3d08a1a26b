// Loading a model with its matrices kept in low precision (dt_llama_load_typed):
//  - a bf16 safetensors model loaded as bf16 is used in place in the mapping: the resident set grows
//    by less than 10% of the file, and the weight block holds only the f32 vectors;
//  - an f32 file loaded as bf16 is converted once (every value the bf16 rounding of the file's), and
//    a bf16 file loaded as f32 is widened exactly; an f16 file loaded as bf16 goes through f32 exactly;
//  - loaded as stored (dt_llama_load_cpu with DT_DTYPE_STORED), each matrix keeps the file's own type
//    when that is bf16 or f16, in place, f32 otherwise (a mixed file keeps each as it is), on the plain
//    CPU backend (f32 arithmetic);
//  - a file whose weight has a dtype we cannot hold, and a weight dtype that is not a float type, are
//    refused with a message naming the file and the tensor.
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>
#include "autograd/dtype_choice.h"
#include "models/llama.h"
#include "models/safetensors_write.h"
#include "tests/file_util.h"
#include "tests/test_util.h"

// Big enough that its 10% dwarfs the loader's own allocations: ~8.1M parameters, 16 MB in bf16.
static const char *CONFIG =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 256,"
    " \"intermediate_size\": 1024, \"num_attention_heads\": 8, \"num_hidden_layers\": 4, \"num_key_value_heads\": 4,"
    " \"vocab_size\": 8192, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0,"
    " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"bos_token_id\": 1, \"eos_token_id\": 2}\n";

// Resident set size of this process in bytes.
static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) { if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0; fclose(f); }
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static float value_of(size_t i, uint32_t salt) { // deterministic, spread over several binades
    uint32_t h = (uint32_t)i * 2654435761u ^ salt;
    h ^= h >> 15;
    return ((float)(h & 0xffff) / 65536.0f - 0.5f) * (float)(1 << (h >> 29)) * 0.01f;
}

// Writes a model folder whose every tensor is stored as dtype, but the one named `other` as other_dtype
// (DT_I32: the values 0, 1, 2...). Returns 0, or -1 with the message in ctx.
static int write_model(dt_ctx *ctx, const char *dir, dt_dtype dtype, const char *other, dt_dtype other_dtype) {
    mkdir(dir, 0755);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (!tf_write(p, CONFIG, strlen(CONFIG))) return dt_fail(ctx, DT_EIO, "%s: cannot write", p);
    const int64_t D = 256, I = 1024, V = 8192, hd = 32, H = 8, KV = 4;
    dt_st_writer *w;
    if (dt_st_writer_init(ctx, &w)) return -1;
    void *bufs[64];
    int nb = 0, rc = 0;
    char name[128];
    for (int l = -1; l < 4 && !rc; l++) {
        const char *names[9] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm",
                                "post_attention_layernorm"};
        const int64_t out[9] = {H * hd, KV * hd, KV * hd, D, I, I, D, D, D}, in[9] = {D, D, D, H * hd, D, D, I, 1, 1};
        const int64_t gout[3] = {V, D, V}, gin[3] = {D, 1, D};
        const char *gnames[3] = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
        for (int t = 0; t < (l < 0 ? 3 : 9) && !rc; t++) {
            if (l < 0) snprintf(name, sizeof name, "%s", gnames[t]);
            else snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, names[t]);
            int64_t o = l < 0 ? gout[t] : out[t], i = l < 0 ? gin[t] : in[t], shape[2] = {o, i};
            int ndim = i == 1 ? 1 : 2;
            size_t n = (size_t)(o * i);
            float *f = malloc(n * sizeof *f);
            void *data = malloc(n * 4); // n values of the stored dtype (4 bytes at most)
            for (size_t k = 0; k < n; k++) f[k] = ndim == 1 ? 1.0f + value_of(k, 7) : value_of(k, (uint32_t)(l * 16 + t));
            dt_dtype st = other && !strcmp(name, other) ? other_dtype : dtype;
            if (st == DT_I32) for (size_t k = 0; k < n; k++) ((int32_t *)data)[k] = (int32_t)k;
            else dt_convert_from_f32(data, st, f, n);
            free(f);
            bufs[nb++] = data;
            rc = dt_st_writer_add(ctx, w, name, st, ndim, shape, data);
        }
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (!rc) rc = dt_st_writer_write(ctx, w, p);
    dt_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return rc ? -1 : 0;
}

// The value the file stored for element k of layer 1's up_proj, as f32.
static float stored(size_t k, dt_dtype dtype) {
    float f = value_of(k, 16 + 5);
    return dtype == DT_BF16 ? dt_bf16_to_f32(dt_f32_to_bf16(f)) : dtype == DT_F16 ? dt_f16_to_f32(dt_f32_to_f16(f)) : f;
}

// Every element of layer 1's up_proj (I, D) of m, as f32, against the file's values after `via`.
static bool up_matches(const dt_llama *m, dt_dtype file, dt_dtype kept) {
    const dt_tensor *W = &m->layers[1].w[DT_MOD_UP];
    if (W->dtype != kept) return false;
    size_t n = (size_t)dt_numel(W);
    float *f = malloc(n * sizeof *f);
    dt_convert_to_f32(f, W->data, W->dtype, n);
    bool ok = true;
    for (size_t k = 0; k < n && ok; k++) {
        float want = stored(k, file);
        if (kept == DT_BF16) want = dt_bf16_to_f32(dt_f32_to_bf16(want));
        ok = f[k] == want;
    }
    free(f);
    return ok && m->norm.dtype == DT_F32 && m->layers[0].attn_norm.dtype == DT_F32;
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char tmp[] = "/tmp/dt_lowprec_XXXXXX", d16[512], d32[512], dh[512], dbad[512], dmix[512], p[600];
    if (!mkdtemp(tmp)) { TEST_FAIL("lowprec load", "mkdtemp"); TEST_EXIT(); }
    snprintf(d16, sizeof d16, "%s/bf16", tmp);
    snprintf(d32, sizeof d32, "%s/f32", tmp);
    snprintf(dh, sizeof dh, "%s/f16", tmp);
    snprintf(dbad, sizeof dbad, "%s/bad", tmp);
    snprintf(dmix, sizeof dmix, "%s/mix", tmp);
    if (write_model(&ctx, d16, DT_BF16, NULL, 0) || write_model(&ctx, d32, DT_F32, NULL, 0) ||
        write_model(&ctx, dh, DT_F16, NULL, 0) || write_model(&ctx, dbad, DT_BF16, "model.layers.2.mlp.up_proj.weight", DT_I32) ||
        write_model(&ctx, dmix, DT_BF16, "model.embed_tokens.weight", DT_F32)) {
        TEST_FAIL("lowprec write models", "%s", ctx.msg);
        tf_rm_tree(tmp);
        TEST_EXIT();
    }
    snprintf(p, sizeof p, "%s/model.safetensors", d16);
    struct stat sb;
    stat(p, &sb);

    // bf16 as bf16: in place.
    dt_llama *m = NULL;
    size_t before = rss_bytes();
    int rc = dt_llama_load_typed(&ctx, d16, dt_backend_cpu(), DT_BF16, &m);
    size_t grew = rss_bytes() - before;
    TEST_CHECK("bf16 file loaded as bf16 is mapped, not copied", !rc && grew < (size_t)sb.st_size / 10 &&
               m->block_bytes < (size_t)sb.st_size / 10,
               "rc %d (%s), RSS grew %zu bytes, block %zu bytes, file %lld bytes", rc, rc ? ctx.msg : "", grew,
               m ? m->block_bytes : 0, (long long)sb.st_size);
    TEST_CHECK("bf16 file loaded as bf16 keeps its values", m && up_matches(m, DT_BF16, DT_BF16), "values or dtypes differ");
    dt_llama_free(m);

    // f32 as bf16: converted once, half the file's bytes in the block.
    rc = dt_llama_load_typed(&ctx, d32, dt_backend_cpu(), DT_BF16, &m);
    TEST_CHECK("f32 file loaded as bf16 is rounded once", !rc && up_matches(m, DT_F32, DT_BF16) &&
               m->layers[3].w[DT_MOD_DOWN].dtype == DT_BF16 && m->embed.dtype == DT_BF16 && m->lm_head.dtype == DT_BF16,
               "rc %d (%s) or values/dtypes differ", rc, rc ? ctx.msg : "");
    dt_llama_free(m);

    // bf16 as f32 (today's path), f16 as bf16 (through f32: exact, then rounded).
    rc = dt_llama_load_typed(&ctx, d16, dt_backend_cpu(), DT_F32, &m);
    TEST_CHECK("bf16 file loaded as f32 is widened exactly", !rc && up_matches(m, DT_BF16, DT_F32), "rc %d (%s)", rc,
               rc ? ctx.msg : "");
    dt_llama_free(m);
    rc = dt_llama_load_typed(&ctx, dh, dt_backend_cpu(), DT_BF16, &m);
    TEST_CHECK("f16 file loaded as bf16", !rc && up_matches(m, DT_F16, DT_BF16), "rc %d (%s)", rc, rc ? ctx.msg : "");
    dt_llama_free(m);
    rc = dt_llama_load_typed(&ctx, dh, dt_backend_cpu(), DT_F16, &m);
    TEST_CHECK("f16 file loaded as f16 is kept", !rc && up_matches(m, DT_F16, DT_F16), "rc %d (%s)", rc, rc ? ctx.msg : "");
    dt_llama_free(m);

    // Stored: bf16 and f16 files keep their type in place; f32 stays f32; a mixed file keeps each matrix's.
    before = rss_bytes();
    rc = dt_llama_load_cpu(&ctx, d16, DT_DTYPE_STORED, "--dtype", &m);
    grew = rss_bytes() - before;
    TEST_CHECK("bf16 file loaded as stored is mapped, kept bf16, f32 arithmetic",
               !rc && grew < (size_t)sb.st_size / 10 && m->block_bytes < (size_t)sb.st_size / 10 &&
               up_matches(m, DT_BF16, DT_BF16) && m->embed.dtype == DT_BF16 && m->lm_head.dtype == DT_BF16 &&
               m->wtype == DT_BF16 && m->be == dt_backend_cpu(),
               "rc %d (%s), RSS grew %zu bytes, block %zu bytes, wtype %s", rc, rc ? ctx.msg : "", grew,
               m ? m->block_bytes : 0, m ? dt_dtype_name(m->wtype) : "-");
    dt_llama_free(m);
    rc = dt_llama_load_cpu(&ctx, dh, DT_DTYPE_STORED, "--dtype", &m);
    TEST_CHECK("f16 file loaded as stored is kept f16", !rc && up_matches(m, DT_F16, DT_F16) && m->wtype == DT_F16 &&
               m->embed.dtype == DT_F16 && m->be == dt_backend_cpu(), "rc %d (%s)", rc, rc ? ctx.msg : "");
    dt_llama_free(m);
    rc = dt_llama_load_cpu(&ctx, d32, DT_DTYPE_STORED, "--dtype", &m);
    TEST_CHECK("f32 file loaded as stored is f32", !rc && up_matches(m, DT_F32, DT_F32) && m->wtype == DT_F32 &&
               m->embed.dtype == DT_F32, "rc %d (%s)", rc, rc ? ctx.msg : "");
    dt_llama_free(m);
    rc = dt_llama_load_cpu(&ctx, dmix, DT_DTYPE_STORED, "--dtype", &m);
    TEST_CHECK("a mixed file loaded as stored keeps each matrix's type",
               !rc && up_matches(m, DT_BF16, DT_BF16) && m->embed.dtype == DT_F32 && m->lm_head.dtype == DT_BF16 &&
               m->wtype == DT_BF16, "rc %d (%s), embed %s", rc, rc ? ctx.msg : "", m ? dt_dtype_name(m->embed.dtype) : "-");
    dt_llama_free(m);
    rc = dt_llama_load_typed(&ctx, d16, dt_backend_cpu(), DT_DTYPE_STORED, &m);
    TEST_CHECK("dt_llama_load_typed takes stored on the CPU", !rc && up_matches(m, DT_BF16, DT_BF16), "rc %d (%s)", rc,
               rc ? ctx.msg : "");
    dt_llama_free(m);

    // Bad input.
    rc = dt_llama_load_typed(&ctx, dbad, dt_backend_cpu(), DT_BF16, &m);
    TEST_CHECK("a weight stored as I32 is refused", rc == DT_EINPUT && !m && strstr(ctx.msg, "model.safetensors") &&
               strstr(ctx.msg, "model.layers.2.mlp.up_proj.weight") && strstr(ctx.msg, "expected"),
               "rc %d: %s", rc, ctx.msg);
    rc = dt_llama_load_typed(&ctx, d16, dt_backend_cpu(), DT_I32, &m);
    TEST_CHECK("weight dtype i32 is refused", rc == DT_EINPUT && !m && strstr(ctx.msg, "I32") && strstr(ctx.msg, d16),
               "rc %d: %s", rc, ctx.msg);
    tf_rm_tree(tmp);
    TEST_EXIT();
}

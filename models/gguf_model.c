// GGUF model files as a weight source (see gguf_model.h). Keys and names follow llama.cpp's
// convert_hf_to_gguf.py and src/llama-arch.cpp.
#include "models/gguf_model.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/quant.h"
#include "models/tensor_names.h"
#include "models/qk_permute.h"

struct dt_gguf_model {
    dt_gguf_file *f;
    size_t n;
    dt_st_tensor *t;       // (n) HF-named views
    size_t *src;           // (n) index of each entry's GGUF tensor
    char **names;          // (n) owned HF names
    void **owned;          // (n) un-permuted q/k copies (NULL for views)
    float *rope_factors;   // (head_dim/2) or NULL
};

// GGUF architecture -> our config's architecture.
static const struct { const char *gguf; dt_arch arch; const char *model_type; } ARCHS[] = {
    {"llama", DT_ARCH_LLAMA, "llama"}, {"qwen2", DT_ARCH_QWEN2, "qwen2"}, {"qwen3", DT_ARCH_QWEN3, "qwen3"},
};

// Optional integer/float keys: absent keeps the default; present with a wrong type fails.
static int opt_int(dt_ctx *ctx, const dt_gguf_file *f, const char *key, int *out) {
    if (dt_gguf_find_key(f, key) < 0) return DT_OK;
    int64_t v;
    int rc = dt_gguf_get_int(ctx, f, key, &v);
    if (rc) return rc;
    if (v < 0 || v > INT32_MAX) return dt_fail(ctx, DT_EINPUT, "%s: key '%s' is %lld, out of range", f->path, key, (long long)v);
    *out = (int)v;
    return DT_OK;
}
static int req_int(dt_ctx *ctx, const dt_gguf_file *f, const char *key, int *out) {
    if (dt_gguf_find_key(f, key) < 0)
        return dt_fail(ctx, DT_EINPUT, "%s: missing metadata key '%s' (needed to build the model)", f->path, key);
    return opt_int(ctx, f, key, out);
}
static int opt_float(dt_ctx *ctx, const dt_gguf_file *f, const char *key, float *out) {
    if (dt_gguf_find_key(f, key) < 0) return DT_OK;
    double v;
    int rc = dt_gguf_get_float(ctx, f, key, &v);
    if (!rc) *out = (float)v;
    return rc;
}

static int read_config(dt_ctx *ctx, const dt_gguf_file *f, dt_model_config *c) {
    const char *arch;
    if (dt_gguf_find_key(f, "general.architecture") < 0)
        return dt_fail(ctx, DT_EINPUT, "%s: missing metadata key 'general.architecture'", f->path);
    int rc = dt_gguf_get_str(ctx, f, "general.architecture", &arch);
    if (rc) return rc;
    size_t ai = 0;
    while (ai < sizeof ARCHS / sizeof ARCHS[0] && strcmp(ARCHS[ai].gguf, arch)) ai++;
    if (ai == sizeof ARCHS / sizeof ARCHS[0])
        return dt_fail(ctx, DT_EINPUT, "%s: general.architecture '%s' is not supported as a base (llama, qwen2, qwen3)",
                       f->path, arch);
    memset(c, 0, sizeof *c);
    c->arch = ARCHS[ai].arch;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", dt_arch_name(c->arch));
    snprintf(c->model_type, sizeof c->model_type, "%s", ARCHS[ai].model_type);
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
    if ((rc = req_int(ctx, f, KEY("embedding_length"), &c->hidden_size)) ||
        (rc = req_int(ctx, f, KEY("block_count"), &c->num_layers)) ||
        (rc = req_int(ctx, f, KEY("attention.head_count"), &c->num_heads)) ||
        (rc = req_int(ctx, f, KEY("feed_forward_length"), &c->intermediate_size)))
        return rc;
    c->num_kv_heads = c->num_heads;
    c->max_position_embeddings = 2048;
    c->rms_norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->head_dim = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
    if ((rc = opt_int(ctx, f, KEY("attention.head_count_kv"), &c->num_kv_heads)) ||
        (rc = opt_int(ctx, f, KEY("context_length"), &c->max_position_embeddings)) ||
        (rc = opt_int(ctx, f, KEY("attention.key_length"), &c->head_dim)) ||
        (rc = opt_float(ctx, f, KEY("attention.layer_norm_rms_epsilon"), &c->rms_norm_eps)) ||
        (rc = opt_float(ctx, f, KEY("rope.freq_base"), &c->rope_theta)))
        return rc;
    if (dt_gguf_find_key(f, KEY("rope.scaling.type")) >= 0) {
        const char *st;
        if ((rc = dt_gguf_get_str(ctx, f, k, &st))) return rc;
        if (strcmp(st, "none"))
            return dt_fail(ctx, DT_EINPUT, "%s: %s '%s' is not supported (only llama3 factors as rope_freqs.weight)",
                           f->path, k, st);
    }
#undef KEY
    const dt_gguf_tensor *emb = dt_gguf_find_tensor(f, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return dt_fail(ctx, DT_EINPUT, "%s: tensor 'token_embd.weight' (2-D) is missing", f->path);
    c->vocab_size = (int)emb->ne[1];
    c->tie_word_embeddings = dt_gguf_find_tensor(f, "output.weight") == NULL;
    c->attention_bias = dt_gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
    c->qk_norm = dt_gguf_find_tensor(f, "blk.0.attn_q_norm.weight") != NULL;
    c->bos_token_id = c->eos_token_id = -1;
    int id = -1;
    if ((rc = opt_int(ctx, f, "tokenizer.ggml.bos_token_id", &id))) return rc;
    c->bos_token_id = id;
    id = -1;
    if ((rc = opt_int(ctx, f, "tokenizer.ggml.eos_token_id", &id))) return rc;
    c->eos_token_id = id;
    c->torch_dtype = DT_F32;
    return dt_config_validate(ctx, c, f->path);
}

// The HF name of a GGUF tensor name, or NULL for a tensor the model does not use.
static char *hf_name(const char *g) {
    char buf[256];
    for (int t = 0; t < DT_GT_COUNT; t++)
        if (!strcmp(g, dt_tn_global_gguf((dt_global_tensor)t))) return strdup(dt_tn_global((dt_global_tensor)t));
    int layer, used = 0;
    if (sscanf(g, "blk.%d.%n", &layer, &used) != 1 || used == 0 || layer < 0) return NULL;
    for (int t = 0; t < DT_LT_COUNT; t++)
        if (!strcmp(g + used, dt_tn_layer_gguf_suffix((dt_layer_tensor)t)) &&
            dt_tn_layer(buf, sizeof buf, layer, (dt_layer_tensor)t) >= 0)
            return strdup(buf);
    // o_proj's bias (Llama/Qwen3 with attention_bias) is no dt_layer_tensor: llama.cpp's optional bo.
    snprintf(buf, sizeof buf, "%s.bias", dt_module_gguf(DT_MOD_O));
    if (!strcmp(g + used, buf) && dt_tn_module(buf, sizeof buf, "", layer, DT_MOD_O, ".bias") >= 0) return strdup(buf);
    return NULL;
}

void dt_gguf_model_close(dt_gguf_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->names[i]);
        free(m->owned[i]);
    }
    free(m->names);
    free(m->owned);
    free(m->t);
    free(m->src);
    free(m->rope_factors);
    dt_gguf_close(m->f);
    free(m);
}

// Fills entry e from GGUF tensor g (a view, or an un-permuted copy for llama's q/k).
static int make_entry(dt_ctx *ctx, dt_gguf_model *m, const dt_model_config *c, const dt_gguf_tensor *g, size_t e) {
    dt_st_tensor *t = &m->t[e];
    dt_dtype dt;
    if (!dt_ggml_to_dtype(g->type, &dt)) {
        const char *tn = "?";
        dt_ggml_type_info(g->type, &tn, NULL, NULL);
        return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' has type %s, which is not supported as a base (F32, F16, "
                       "BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)", m->f->path, g->name, tn);
    }
    t->name = m->names[e];
    t->dtype = dt;
    t->st_dtype = dt == DT_F32 ? DT_ST_F32 : dt == DT_F16 ? DT_ST_F16 : dt == DT_BF16 ? DT_ST_BF16 : DT_ST_BLOCK;
    t->ndim = g->n_dims > 0 ? g->n_dims : 1;
    for (int d = 0; d < DT_MAX_DIMS; d++) t->shape[d] = d < t->ndim ? g->ne[t->ndim - 1 - d] : 1;
    t->data = g->data;
    t->nbytes = g->nbytes;
    // llama.cpp's "llama" q/k rows (weights and biases) are interleaved per head: undo it.
    int layer;
    dt_layer_tensor lt;
    if (dt_gguf_permutes_qk(c) && !dt_tn_parse_layer(t->name, &layer, &lt) &&
        (lt == DT_LT_Q || lt == DT_LT_K || lt == DT_LT_Q_BIAS || lt == DT_LT_K_BIAS)) {
        const int heads = lt == DT_LT_Q || lt == DT_LT_Q_BIAS ? c->num_heads : c->num_kv_heads;
        const int64_t rows = t->shape[0];
        // An empty q/k weight is no projection; refusing it also keeps a [0-byte, 2^28-row] tensor from
        // spinning the row loop below.
        if (g->nbytes == 0)
            return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' is empty (ne [%lld, %lld])", m->f->path, g->name,
                           (long long)g->ne[0], (long long)g->ne[1]);
        if (rows % (2 * heads))
            return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s': %lld rows do not split into %d heads of even size",
                           m->f->path, g->name, (long long)rows, heads);
        if (!(m->owned[e] = malloc(g->nbytes))) return dt_fail(ctx, DT_ENOMEM, "out of memory");
        dt_gguf_permute_rows(m->owned[e], g->data, rows, g->nbytes / (size_t)rows, heads, true);
        t->data = m->owned[e];
    }
    return DT_OK;
}

int dt_gguf_model_open(dt_ctx *ctx, const char *path, dt_model_config *cfg, dt_gguf_model **out) {
    *out = NULL;
    dt_gguf_model *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    int rc = dt_gguf_open(ctx, path, &m->f);
    if (!rc) rc = read_config(ctx, m->f, cfg);
    size_t cap = m->f ? (size_t)m->f->n_tensors : 0;
    if (!rc && (!(m->t = calloc(cap + 1, sizeof *m->t)) || !(m->src = calloc(cap + 1, sizeof *m->src)) ||
                !(m->names = calloc(cap + 1, sizeof *m->names)) || !(m->owned = calloc(cap + 1, sizeof *m->owned))))
        rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < cap; i++) {
        const dt_gguf_tensor *g = &m->f->tensors[i];
        if (!strcmp(g->name, "rope_freqs.weight")) {
            // llama3 RoPE: head_dim/2 f32 factors the frequencies are divided by.
            // Exactly that many values: [hd/2, 0, ...] is 0 bytes and [hd/2, 2] twice too many.
            if (g->type != DT_GGML_F32 || g->ne[0] != cfg->head_dim / 2 || g->nbytes != (size_t)g->ne[0] * 4) {
                rc = dt_fail(ctx, DT_EINPUT, "%s: tensor 'rope_freqs.weight': expected %d F32 values", path, cfg->head_dim / 2);
                break;
            }
            if (!(m->rope_factors = malloc(g->nbytes))) { rc = dt_fail(ctx, DT_ENOMEM, "out of memory"); break; }
            memcpy(m->rope_factors, g->data, g->nbytes);
        }
        // rope_freqs.weight keeps its name: a merge writes it back as it is.
        char *name = !strcmp(g->name, "rope_freqs.weight") ? strdup(g->name) : hf_name(g->name);
        if (!name) continue; // not part of the model we build (llama.cpp extras); inspect still lists it
        m->names[m->n] = name;
        m->src[m->n] = i;
        rc = make_entry(ctx, m, cfg, g, m->n);
        m->n++;
    }
    if (rc) {
        dt_gguf_model_close(m);
        return rc;
    }
    *out = m;
    return DT_OK;
}

size_t dt_gguf_model_count(const dt_gguf_model *m) { return m->n; }
const dt_st_tensor *dt_gguf_model_at(const dt_gguf_model *m, size_t i) { return &m->t[i]; }
const dt_st_tensor *dt_gguf_model_find(const dt_gguf_model *m, const char *hf) {
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, hf)) return &m->t[i];
    return NULL;
}
const dt_gguf_tensor *dt_gguf_model_source(const dt_gguf_model *m, size_t i) { return &m->f->tensors[m->src[i]]; }
const dt_gguf_file *dt_gguf_model_file(const dt_gguf_model *m) { return m->f; }
const float *dt_gguf_model_rope_factors(const dt_gguf_model *m) { return m->rope_factors; }

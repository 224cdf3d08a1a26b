// Merging LoRA adapters into the base weights: the public API, the checks of the base model against its
// config, the adapters, and dt_merge, which hands the work to the output writers (see merge_internal.h).
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peft/export_gguf.h"
#include "peft/peft_io.h"
#include "models/bnb4.h"
#include "models/gguf.h"
#include "peft/merge_internal.h"

int dt_adapter_load_cfg(dt_ctx *ctx, const char *dir, const dt_model_config *cfg, dt_adapter **out) {
    // dt_adapter_load reads only m->cfg for LoRA (and for the shape of prompt embeddings, whose values
    // come from the file), so a model without weights stands in for the base.
    dt_llama stub;
    memset(&stub, 0, sizeof stub);
    stub.cfg = *cfg;
    return dt_adapter_load(ctx, dir, &stub, out);
}

const dt_lora_ref *dt_adapter_lora_at(const dt_adapter *a, int layer, int module) {
    if (a->method != &dt_method_lora || !a->ref_ptrs || module < 0 || module >= DT_MOD_COUNT) return NULL;
    return a->ref_ptrs[(size_t)layer * DT_MOD_COUNT + (size_t)module];
}

void dt_lora_fold(float *W, const float *A, const float *B, int64_t out, int64_t in, int64_t r, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)in, (int)r, scale, B, (int)r, A, (int)in,
                1.0f, W, (int)in);
}

void dt_mg_base_name(const char *path, char *buf, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(buf, n, "%.*s", (int)(len - start), path + start);
}

// ---- the source model and the adapters ---------------------------------------------------------------

static int expect(merger *m, const char *name, int ndim, int64_t d0, int64_t d1, bool required) {
    const dt_st_tensor *t = dt_mg_src_find(m, name);
    if (!t) return required ? dt_fail(m->ctx, DT_EINPUT, "%s: tensor '%s' is missing (the config says the model has it)", m->o->model, name) : DT_OK;
    const int64_t shape[2] = {d0, d1};
    return dt_st_check_shape(m->ctx, dt_mg_src_file(m, t), t, ndim, shape);
}

// The config must describe the tensors: every tensor it implies present with its shape, no layer beyond it.
static int check_base(merger *m) {
    const dt_model_config *c = &m->cfg;
    const int64_t D = c->hidden_size, V = c->vocab_size, F = c->intermediate_size, hd = c->head_dim;
    const int64_t q = (int64_t)c->num_heads * hd, kv = (int64_t)c->num_kv_heads * hd;
    int rc = expect(m, dt_tn_global(DT_GT_EMBED), 2, V, D, true);
    if (!rc) rc = expect(m, dt_tn_global(DT_GT_NORM), 1, D, 0, true);
    if (!rc) rc = expect(m, dt_tn_global(DT_GT_LM_HEAD), 2, V, D, !c->tie_word_embeddings);
    const int64_t dims[DT_LT_COUNT][2] = {
        [DT_LT_Q] = {q, D}, [DT_LT_K] = {kv, D}, [DT_LT_V] = {kv, D}, [DT_LT_O] = {D, q},
        [DT_LT_GATE] = {F, D}, [DT_LT_UP] = {F, D}, [DT_LT_DOWN] = {D, F},
        [DT_LT_Q_BIAS] = {q, 0}, [DT_LT_K_BIAS] = {kv, 0}, [DT_LT_V_BIAS] = {kv, 0},
        [DT_LT_Q_NORM] = {hd, 0}, [DT_LT_K_NORM] = {hd, 0}, [DT_LT_ATTN_NORM] = {D, 0}, [DT_LT_FFN_NORM] = {D, 0},
    };
    char name[256];
    for (int l = 0; l < c->num_layers && !rc; l++)
        for (int t = 0; t < DT_LT_COUNT && !rc; t++) {
            bool bias = t == DT_LT_Q_BIAS || t == DT_LT_K_BIAS || t == DT_LT_V_BIAS, norm = t == DT_LT_Q_NORM || t == DT_LT_K_NORM;
            if ((bias && !c->attention_bias) || (norm && !c->qk_norm)) continue;
            dt_tn_layer(name, sizeof name, l, (dt_layer_tensor)t);
            rc = expect(m, name, dims[t][1] ? 2 : 1, dims[t][0], dims[t][1], true);
        }
    for (size_t i = 0; i < dt_mg_src_count(m) && !rc; i++) {
        const dt_st_tensor *t = dt_mg_src_at(m, i);
        int layer;
        dt_layer_tensor lt;
        if (!dt_tn_parse_layer(t->name, &layer, &lt) && layer >= c->num_layers)
            rc = dt_fail(m->ctx, DT_EINPUT, "%s: tensor '%s' belongs to layer %d, but the config has %d layers",
                         dt_mg_src_file(m, t), t->name, layer, c->num_layers);
    }
    return rc;
}

// An adapter's copies of base layers (PEFT's save_embedding_layers, peft_io.h) must be the base's own:
// checked here against the source, since the merge reads adapters without the model's weights.
static int check_base_copies(merger *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    dt_safetensors *st = NULL;
    int rc = dt_st_open(m->ctx, path, &st);
    for (size_t i = 0; !rc && i < dt_st_count(st); i++) {
        const dt_st_tensor *t = dt_st_at(st, i), *src;
        const char *copied = dt_peft_base_copy_of(t->name, &m->cfg);
        if (!copied || !(src = dt_mg_src_find(m, copied)) || src->ndim != 2) continue;
        float *base = malloc((size_t)(src->shape[0] * src->shape[1]) * sizeof(float));
        if (!base) { rc = dt_fail(m->ctx, DT_ENOMEM, "out of memory"); break; }
        rc = dt_st_tensor_copy(m->ctx, dt_mg_src_file(m, src), src, DT_F32, base);
        dt_tensor bt;
        dt_tensor_set(&bt, DT_F32, base, 2, src->shape);
        if (!rc) rc = dt_peft_check_base_copy(m->ctx, path, t, &bt);
        free(base);
    }
    dt_st_close(st);
    return rc;
}

static int load_adapters(merger *m) {
    const dt_merge_opts *o = m->o;
    if (o->n_adapters && !(m->ad = calloc((size_t)o->n_adapters, sizeof *m->ad))) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
    for (int i = 0; i < o->n_adapters; i++) {
        // A NaN or infinite multiplier (the CLI's strtof also turns "nan", "inf" and "1e39" into one) would
        // fill every tensor the adapter touches with NaN or inf, which the writers would store as they are.
        if (!isfinite(o->adapters[i].weight))
            return dt_fail(m->ctx, DT_EINPUT, "%s: merge weight %g is not a finite number", o->adapters[i].dir,
                           (double)o->adapters[i].weight);
        int rc = dt_adapter_load_cfg(m->ctx, o->adapters[i].dir, &m->cfg, &m->ad[i]);
        if (rc) return rc;
        const dt_method *me = m->ad[i]->method;
        if (me->no_merge) return dt_fail(m->ctx, DT_EINPUT, "%s: a %s adapter cannot be merged into weights: %s", o->adapters[i].dir, me->peft_type, me->no_merge);
        if (me->merge_check && (rc = me->merge_check(m->ctx, m->ad[i], &m->cfg, o->adapters[i].dir))) return rc;
        if ((rc = check_base_copies(m, o->adapters[i].dir))) return rc;
    }
    return DT_OK;
}

static bool any_folds(const merger *m, int layer, int lt) {
    for (int i = 0; i < m->o->n_adapters; i++)
        if (m->ad[i]->method->folds(m->ad[i], layer, lt)) return true;
    return false;
}

// Whether an adapter writes layer tensor lt where the base may have none: scaling a missing bias (IA3)
// leaves it zero, so only methods that add to a bias count.
static bool any_creates(const merger *m, int layer, int lt) {
    for (int i = 0; i < m->o->n_adapters; i++)
        if (!m->ad[i]->method->scales_bias && m->ad[i]->method->folds(m->ad[i], layer, lt)) return true;
    return false;
}

// The tensors the merged model gains (merge_internal.h): the attention biases when an adapter writes one
// the base lacks (transformers' attention_bias then wants q, k, v and o biases in every layer: zeros
// where nothing is folded), and lm_head.weight when the base ties it to the embedding and an adapter
// changes either (each must then be its own matrix).
static int plan_extras(merger *m) {
    const dt_model_config *c = &m->cfg;
    const int L = c->num_layers;
    const dt_layer_tensor qkv[3] = {DT_LT_Q_BIAS, DT_LT_K_BIAS, DT_LT_V_BIAS};
    char name[256];
    bool want = false;
    for (int l = 0; l < L && !want; l++) {
        for (int k = 0; k < 3; k++) want |= !c->attention_bias && any_creates(m, l, qkv[k]);
        dt_tn_module(name, sizeof name, "", l, DT_MOD_O, ".bias");
        want |= !dt_mg_src_find(m, name) && any_creates(m, l, DT_FOLD_O_BIAS);
    }
    if (want && (c->attention_bias || (c->arch != DT_ARCH_LLAMA && c->arch != DT_ARCH_QWEN3)))
        return dt_fail(m->ctx, DT_EINPUT, "%s: an adapter adds attention biases this %s model's config cannot declare",
                       m->o->model, c->arch_name);
    m->attention_bias = want;
    const dt_st_tensor *embed = dt_mg_src_find(m, dt_tn_global(DT_GT_EMBED));
    m->untie = c->tie_word_embeddings && (any_folds(m, -1, DT_FOLD_EMBED) || any_folds(m, -1, DT_FOLD_LM_HEAD));
    const size_t n = (want ? (size_t)L * 4 : 0) + m->untie;
    if (!n) return DT_OK;
    const int64_t D = c->hidden_size, q = (int64_t)c->num_heads * c->head_dim, kv = (int64_t)c->num_kv_heads * c->head_dim;
    const int64_t widest = q > D ? q : D;
    m->extra = calloc(n, sizeof *m->extra);
    m->zeros = calloc((size_t)widest, sizeof(float));
    if (!m->extra || !m->zeros) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
    const int shard = m->st ? dt_st_shard_count(m->st) - 1 : 0; // new tensors go into the last shard
    for (int l = 0; l < L && want; l++)
        for (int k = 0; k < 4; k++) {
            const int64_t out = k == 0 ? q : k == 3 ? D : kv;
            if (k < 3) dt_tn_layer(name, sizeof name, l, qkv[k]);
            else dt_tn_module(name, sizeof name, "", l, DT_MOD_O, ".bias");
            dt_st_tensor *t = &m->extra[m->n_extra];
            if (!(t->name = strdup(name))) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
            m->n_extra++;
            t->dtype = DT_F32;
            t->st_dtype = DT_ST_F32;
            t->ndim = 1;
            for (int d = 0; d < DT_MAX_DIMS; d++) t->shape[d] = 1;
            t->shape[0] = out;
            t->data = m->zeros;
            t->nbytes = (size_t)out * sizeof(float);
            t->shard = shard;
        }
    if (m->untie) {
        dt_st_tensor *t = &m->extra[m->n_extra];
        *t = *embed; // the same bytes, under the head's name
        if (!(t->name = strdup(dt_tn_global(DT_GT_LM_HEAD)))) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
        m->n_extra++;
    }
    return DT_OK;
}

int dt_merge(dt_ctx *ctx, const dt_merge_opts *o) {
    const bool float_out = o->dtype == DT_F32 || o->dtype == DT_F16 || o->dtype == DT_BF16;
    if (o->dtype >= 0 && !float_out && !(o->format == DT_MERGE_GGUF && dt_ggml_from_dtype_any((dt_dtype)o->dtype) >= 0))
        return dt_fail(ctx, DT_EINPUT, "output dtype %s: a Hugging Face folder takes f32, f16 or bf16; a GGUF file "
                       "also q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K", dt_dtype_name((dt_dtype)o->dtype));
    if (o->report) memset(o->report, 0, sizeof *o->report);
    merger m = {.ctx = ctx, .o = o};
    pthread_mutex_init(&m.stat_mu, NULL);
    int rc = dt_weights_open(ctx, o->model, &m.cfg, &m.w);
    size_t len = strlen(o->model);
    const bool l2c = len >= 4 && !strcmp(o->model + len - 4, ".bin"), gguf = len >= 5 && !strcmp(o->model + len - 5, ".gguf");
    if (!rc && !l2c && !gguf) rc = dt_st_open(ctx, o->model, &m.st);
    if (!rc && m.st) { // the merge reads the folder's tensors as stored: packed 4-bit weights have no fold
        dt_bnb4 *b = NULL;
        rc = dt_bnb4_open(ctx, o->model, m.st, &b);
        if (!rc && b)
            rc = dt_fail(ctx, DT_EUNSUPPORTED, "%s: a bitsandbytes 4-bit checkpoint cannot be merged into (its linears are "
                         "packed 4-bit blocks); merge the adapter into the unquantized base model it was quantized from",
                         o->model);
        dt_bnb4_close(b);
    }
    if (!rc && o->format == DT_MERGE_GGUF) rc = dt_gguf_arch(ctx, &m.cfg, o->model, &m.arch);
    if (!rc) rc = check_base(&m);
    if (!rc) rc = load_adapters(&m);
    if (!rc) rc = plan_extras(&m);
    if (!rc) rc = o->format == DT_MERGE_GGUF ? dt_mg_write_gguf(&m) : dt_mg_write_hf(&m);
    for (int i = 0; m.ad && i < o->n_adapters; i++) dt_adapter_free(m.ad[i]);
    free(m.ad);
    for (size_t i = 0; i < m.n_extra; i++) free(m.extra[i].name);
    free(m.extra);
    free(m.zeros);
    free(m.scratch);
    free(m.obuf);
    dt_st_close(m.st);
    dt_weights_close(m.w);
    pthread_mutex_destroy(&m.stat_mu);
    return rc;
}

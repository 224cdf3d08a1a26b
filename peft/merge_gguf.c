// The GGUF output of a merge: a complete llama.cpp model (metadata, tokenizer, tensors by llama.cpp's
// names, q/k permuted for "llama", norms in f32), written by the GGUF writer (atomically).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/quant.h"
#include "models/gguf.h"
#include "models/gguf_model.h"
#include "models/gguf_tokenizer.h"
#include "models/gguf_write.h"
#include "peft/export_gguf.h"
#include "peft/merge_internal.h"

typedef struct gguf_plan {
    tjob *jobs;
    size_t n, next;
} gguf_plan;

static int gguf_fill(void *user, dt_ctx *ctx, dt_gguf_writer *w, const char *name, size_t nbytes) {
    gguf_plan *p = user;
    tjob *j = &p->jobs[p->next++];
    if (strcmp(name, j->name) || nbytes != dt_mg_job_bytes(j))
        return dt_fail(ctx, DT_EINTERNAL, "merge: the GGUF writer asks for '%s', expected '%s'", name, j->name);
    if (dt_mg_is_plain(j)) { // straight from the mapping
        int rc = dt_gguf_write_data(ctx, w, j->src->data, nbytes);
        dt_mg_release(j->m, j->src);
        return rc;
    }
    const void *src;
    int rc = dt_mg_fetch(j->m->pf, j, j->m->obuf, &src);
    if (rc) return dt_prefix(ctx, rc, "tensor '%s': ", j->src ? j->src->name : j->name);
    return dt_gguf_write_data(ctx, w, src, nbytes);
}

// The per-layer tensor order of the GGUF file (llama.cpp finds tensors by name, so the order is ours).
static const dt_layer_tensor GGUF_LAYER_ORDER[] = {
    DT_LT_ATTN_NORM, DT_LT_Q, DT_LT_Q_BIAS, DT_LT_K, DT_LT_K_BIAS, DT_LT_V, DT_LT_V_BIAS, DT_LT_Q_NORM,
    DT_LT_K_NORM, DT_LT_O, DT_LT_FFN_NORM, DT_LT_GATE, DT_LT_UP, DT_LT_DOWN,
};

static bool is_1d_or_norm(const tjob *j) {
    return j->ndim < 2 || (j->lt == DT_LT_Q_NORM || j->lt == DT_LT_K_NORM || j->lt == DT_LT_ATTN_NORM || j->lt == DT_LT_FFN_NORM);
}

// Adds the job of the output tensor `name` made from source tensor t. dtype DT_MERGE_DTYPE_SAME: t's own type.
static tjob *add_job(merger *m, gguf_plan *p, const dt_st_tensor *t, const char *name, int dtype) {
    tjob *j = &p->jobs[p->n++];
    dt_mg_job_init(m, j, t);
    snprintf(j->name, sizeof j->name, "%s", name);
    j->out = is_1d_or_norm(j) ? DT_F32 : dtype == DT_MERGE_DTYPE_SAME ? t->dtype : (dt_dtype)dtype;
    return j;
}

// Quantized outputs need whole blocks in every row, and NF4/FP4 (whose scales live outside the blocks)
// have no GGUF form.
static int check_job_type(merger *m, const tjob *j) {
    int64_t block;
    if (!dt_quant_layout(j->out, &block, NULL)) return DT_OK;
    if (dt_ggml_from_dtype_any(j->out) < 0)
        return dt_fail(m->ctx, DT_EINPUT, "%s: tensor '%s' is %s, which a GGUF file cannot hold; merge with --dtype "
                       "f32, f16, bf16 or a ggml type", dt_mg_src_file(m, j->src), j->src->name, dt_dtype_name(j->out));
    const int64_t cols = j->shape[j->ndim - 1];
    if (cols % block)
        return dt_fail(m->ctx, DT_EINPUT, "%s: tensor '%s': rows of %lld values are not whole %s blocks of %lld",
                       dt_mg_src_file(m, j->src), j->src->name, (long long)cols, dt_dtype_name(j->out), (long long)block);
    return DT_OK;
}

// Lists the output tensors: rope_freqs (llama3 scaling), token_embd, each layer, output_norm, output.
static int plan_gguf(merger *m, int dtype, gguf_plan *p) {
    const dt_model_config *c = &m->cfg;
    const size_t per_layer = sizeof GGUF_LAYER_ORDER / sizeof GGUF_LAYER_ORDER[0];
    if (!(p->jobs = calloc(4 + (size_t)c->num_layers * (per_layer + 1), sizeof *p->jobs))) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
    const dt_st_tensor *rf = dt_mg_src_find(m, "rope_freqs.weight"); // a GGUF base's llama3 factors
    if (rf) add_job(m, p, rf, "rope_freqs.weight", DT_F32);
    else if (c->rope_scaling_type == DT_ROPE_LLAMA3) {
        tjob *j = &p->jobs[p->n++];
        j->m = m;
        j->lt = -1;
        snprintf(j->name, sizeof j->name, "rope_freqs.weight");
        j->out = DT_F32;
        j->ndim = 1;
        j->shape[0] = c->head_dim / 2;
    }
    add_job(m, p, dt_mg_src_find(m, dt_tn_global(DT_GT_EMBED)), dt_tn_global_gguf(DT_GT_EMBED), dtype);
    const bool perm = dt_gguf_permutes_qk(c);
    char hf[256], gg[96];
    for (int l = 0; l < c->num_layers; l++)
        for (size_t k = 0; k < per_layer; k++) {
            const dt_layer_tensor lt = GGUF_LAYER_ORDER[k];
            dt_tn_layer(hf, sizeof hf, l, lt);
            const dt_st_tensor *t = dt_mg_src_find(m, hf);
            if (!t) continue;
            dt_tn_layer_gguf(gg, sizeof gg, l, lt);
            tjob *j = add_job(m, p, t, gg, dtype);
            if (perm && (lt == DT_LT_Q || lt == DT_LT_Q_BIAS)) j->heads = c->num_heads;
            if (perm && (lt == DT_LT_K || lt == DT_LT_K_BIAS)) j->heads = c->num_kv_heads;
            if (lt == DT_LT_O) { // o_proj's bias (Llama/Qwen3 attention_bias), llama.cpp's optional bo
                dt_tn_module(hf, sizeof hf, "", l, DT_MOD_O, ".bias");
                if ((t = dt_mg_src_find(m, hf))) {
                    snprintf(gg, sizeof gg, "blk.%d.%s.bias", l, dt_module_gguf(DT_MOD_O));
                    add_job(m, p, t, gg, dtype);
                }
            }
        }
    add_job(m, p, dt_mg_src_find(m, dt_tn_global(DT_GT_NORM)), dt_tn_global_gguf(DT_GT_NORM), dtype);
    // A tied head is the embedding: llama.cpp uses token_embd when output.weight is absent.
    const dt_st_tensor *head = dt_mg_src_find(m, dt_tn_global(DT_GT_LM_HEAD));
    if (head && (!c->tie_word_embeddings || m->untie)) add_job(m, p, head, dt_tn_global_gguf(DT_GT_LM_HEAD), dtype);
    // Anything else in the checkpoint has no llama.cpp name; the converter drops rotary inv_freq too.
    for (size_t i = 0; i < dt_mg_src_count(m); i++) {
        const dt_st_tensor *t = dt_mg_src_at(m, i);
        bool used = false;
        for (size_t k = 0; k < p->n && !used; k++) used = p->jobs[k].src == t;
        if (!used && !(c->tie_word_embeddings && !strcmp(t->name, dt_tn_global(DT_GT_LM_HEAD))) &&
            !strstr(t->name, "rotary_emb.inv_freq"))
            dt_warn(m->ctx, "%s: tensor '%s' has no llama.cpp name; left out of the GGUF file", dt_mg_src_file(m, t), t->name);
    }
    for (size_t k = 0; k < p->n; k++) {
        int rc = p->jobs[k].src ? check_job_type(m, &p->jobs[k]) : DT_OK;
        if (rc) return rc;
    }
    return DT_OK;
}

// llama.cpp's general.file_type (LlamaFileType) for a model written as one type; the K types as their
// "_S" variants (every tensor of that type).
static uint32_t file_type(dt_dtype t) {
    switch (t) {
    case DT_F16: return DT_GGUF_FTYPE_F16;
    case DT_BF16: return DT_GGUF_FTYPE_BF16;
    case DT_Q4_0: return 2;
    case DT_Q4_1: return 3;
    case DT_Q8_0: return 7;
    case DT_Q5_0: return 8;
    case DT_Q5_1: return 9;
    case DT_Q4_K: return 14;
    case DT_Q5_K: return 16;
    case DT_Q6_K: return 18;
    default: return DT_GGUF_FTYPE_F32;
    }
}

// Whether a job quantizes values it computed (folded, or converted from another type).
static bool requantized(const tjob *j) {
    return j->src && dt_is_quant(j->out) && (dt_mg_folds(j->m, j->layer, j->lt) || j->out != j->src->dtype);
}

// Copies the re-quantization errors of the jobs into the caller's report.
static int fill_report(merger *m, const gguf_plan *p) {
    dt_merge_report *r = m->o->report;
    if (!r) return DT_OK;
    size_t n = 0;
    for (size_t k = 0; k < p->n; k++) n += requantized(&p->jobs[k]);
    if (!(r->t = calloc(n ? n : 1, sizeof *r->t))) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
    for (size_t k = 0; k < p->n; k++) {
        const tjob *j = &p->jobs[k];
        if (!requantized(j)) continue;
        dt_merge_quant_err *e = &r->t[r->n++];
        snprintf(e->name, sizeof e->name, "%s", j->name);
        e->type = j->out;
        e->err2 = j->err2;
        e->ref2 = j->ref2;
    }
    return DT_OK;
}

// The tokenizer keys of a GGUF base, copied as they are.
static int copy_gguf_tokenizer(dt_ctx *ctx, dt_gguf_writer *w, const dt_gguf_file *f) {
    for (int64_t i = 0; i < f->n_kv; i++)
        if (!strncmp(f->kvs[i].key, "tokenizer.", 10)) {
            int rc = dt_gguf_set_kv(ctx, w, &f->kvs[i]);
            if (rc) return rc;
        }
    return DT_OK;
}

int dt_mg_write_gguf(merger *m) {
    dt_ctx *ctx = m->ctx;
    int rc;
    // The base's storage dtype: that of its embedding (a llama2.c checkpoint is f32).
    const dt_st_tensor *embed = dt_mg_src_find(m, dt_tn_global(DT_GT_EMBED));
    const struct dt_gguf_model *gbase = dt_weights_gguf(m->w);
    // A quantized base without --dtype keeps each tensor's type, as --dtype same does.
    const int dtype = m->o->dtype >= 0 || m->o->dtype == DT_MERGE_DTYPE_SAME ? m->o->dtype
                      : dt_is_quant(embed->dtype) ? DT_MERGE_DTYPE_SAME : (int)embed->dtype;
    const char *tokdir = m->o->tokenizer ? m->o->tokenizer : m->st ? m->o->model : NULL;
    if (!tokdir && !gbase)
        return dt_fail(ctx, DT_EINPUT, "%s: a llama2.c checkpoint has no tokenizer.json; name a tokenizer folder for the GGUF file", m->o->model);
    gguf_plan p = {0};
    rc = plan_gguf(m, dtype, &p);
    if (!rc) rc = dt_mg_alloc_scratch(m, p.jobs, p.n);
    for (size_t i = 0; i < p.n && !rc; i++)
        if (!dt_mg_is_plain(&p.jobs[i]) && dt_mg_job_bytes(&p.jobs[i]) > m->obuf_n) m->obuf_n = dt_mg_job_bytes(&p.jobs[i]);
    if (!rc && !(m->obuf = malloc(m->obuf_n ? m->obuf_n : 1))) rc = dt_fail(ctx, DT_ENOMEM, "out of memory for a %zu-byte tensor", m->obuf_n);
    dt_gguf_writer *w = NULL;
    if (!rc) rc = dt_gguf_writer_new(ctx, m->o->out, &w);
    char name[256];
    dt_mg_base_name(m->o->model, name, sizeof name);
    uint32_t ftype = dtype >= 0 ? file_type((dt_dtype)dtype) : file_type(embed->dtype);
    if (dtype == DT_MERGE_DTYPE_SAME && gbase) { // the base's own label of its mix of types
        const dt_gguf_file *gf = dt_gguf_model_file(gbase);
        int64_t k = dt_gguf_find_key(gf, "general.file_type");
        if (k >= 0) ftype = (uint32_t)dt_gguf_kv_uint(&gf->kvs[k], 0);
    }
    if (!rc) rc = dt_gguf_set_model_keys(ctx, w, &m->cfg, m->arch, name, ftype);
    dt_gguf_tok_opts topts = {.n_vocab = m->cfg.vocab_size};
    if (!rc) rc = tokdir ? dt_gguf_add_tokenizer(ctx, w, tokdir, &topts) : copy_gguf_tokenizer(ctx, w, dt_gguf_model_file(gbase));
    for (size_t i = 0; i < p.n && !rc; i++)
        rc = dt_gguf_add_tensor(ctx, w, p.jobs[i].name, (uint32_t)dt_ggml_from_dtype_any(p.jobs[i].out), p.jobs[i].ndim, p.jobs[i].shape);
    // The GGUF writer asks for the tensors in the order they were declared.
    size_t *order = rc ? NULL : malloc((p.n ? p.n : 1) * sizeof *order);
    if (!rc && !order) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < p.n; i++) order[i] = i;
    prefetch pf;
    if (!rc) {
        dt_mg_prefetch_start(&pf, m, p.jobs, order, p.n);
        m->pf = &pf;
        rc = dt_gguf_write_tensors(ctx, w, gguf_fill, &p);
        m->pf = NULL;
        dt_mg_prefetch_free(&pf);
    }
    free(order);
    if (!rc) rc = fill_report(m, &p);
    if (!rc) rc = dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    free(p.jobs);
    return rc;
}


// The GGUF output of a merge: a complete llama.cpp model (metadata, tokenizer, tensors by llama.cpp's
// names, q/k permuted for "llama", norms in f32), written by the GGUF writer (atomically).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "models/gguf.h"
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

// Adds the job of the output tensor `name` made from source tensor t.
static tjob *add_job(merger *m, gguf_plan *p, const dt_st_tensor *t, const char *name, dt_dtype dtype) {
    tjob *j = &p->jobs[p->n++];
    dt_mg_job_init(m, j, t);
    snprintf(j->name, sizeof j->name, "%s", name);
    j->out = is_1d_or_norm(j) ? DT_F32 : dtype;
    return j;
}

// Lists the output tensors: rope_freqs (llama3 scaling), token_embd, each layer, output_norm, output.
static int plan_gguf(merger *m, dt_dtype dtype, gguf_plan *p) {
    const dt_model_config *c = &m->cfg;
    const size_t per_layer = sizeof GGUF_LAYER_ORDER / sizeof GGUF_LAYER_ORDER[0];
    if (!(p->jobs = calloc(4 + (size_t)c->num_layers * per_layer, sizeof *p->jobs))) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
    if (c->rope_scaling_type == DT_ROPE_LLAMA3) {
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
        }
    add_job(m, p, dt_mg_src_find(m, dt_tn_global(DT_GT_NORM)), dt_tn_global_gguf(DT_GT_NORM), dtype);
    // A tied head is the embedding: llama.cpp uses token_embd when output.weight is absent.
    const dt_st_tensor *head = dt_mg_src_find(m, dt_tn_global(DT_GT_LM_HEAD));
    if (head && !c->tie_word_embeddings) add_job(m, p, head, dt_tn_global_gguf(DT_GT_LM_HEAD), dtype);
    // Anything else in the checkpoint has no llama.cpp name; the converter drops rotary inv_freq too.
    for (size_t i = 0; i < dt_mg_src_count(m); i++) {
        const dt_st_tensor *t = dt_mg_src_at(m, i);
        bool used = false;
        for (size_t k = 0; k < p->n && !used; k++) used = p->jobs[k].src == t;
        if (!used && !(c->tie_word_embeddings && !strcmp(t->name, dt_tn_global(DT_GT_LM_HEAD))) &&
            !strstr(t->name, "rotary_emb.inv_freq"))
            dt_warn(m->ctx, "%s: tensor '%s' has no llama.cpp name; left out of the GGUF file", dt_mg_src_file(m, t), t->name);
    }
    return DT_OK;
}

int dt_mg_write_gguf(merger *m) {
    dt_ctx *ctx = m->ctx;
    int rc;
    // The base's storage dtype: that of its embedding (a llama2.c checkpoint is f32).
    const dt_st_tensor *embed = dt_mg_src_find(m, dt_tn_global(DT_GT_EMBED));
    const dt_dtype dtype = m->o->dtype >= 0 ? (dt_dtype)m->o->dtype : embed->dtype;
    const char *tokdir = m->o->tokenizer ? m->o->tokenizer : m->st ? m->o->model : NULL;
    if (!tokdir)
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
    const uint32_t ftype = dtype == DT_BF16 ? DT_GGUF_FTYPE_BF16 : dtype == DT_F16 ? DT_GGUF_FTYPE_F16 : DT_GGUF_FTYPE_F32;
    if (!rc) rc = dt_gguf_set_model_keys(ctx, w, &m->cfg, m->arch, name, ftype);
    dt_gguf_tok_opts topts = {.n_vocab = m->cfg.vocab_size};
    if (!rc) rc = dt_gguf_add_tokenizer(ctx, w, tokdir, &topts);
    for (size_t i = 0; i < p.n && !rc; i++)
        rc = dt_gguf_add_tensor(ctx, w, p.jobs[i].name, (uint32_t)dt_ggml_from_dtype(p.jobs[i].out), p.jobs[i].ndim, p.jobs[i].shape);
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
    if (!rc) rc = dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    free(p.jobs);
    return rc;
}


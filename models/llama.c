#include "models/llama.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/cpu_bf16_backend.h"
#include "autograd/dtype_choice.h"
#include "autograd/rng.h"
#include "models/llama_quant.h"

// One weight the model needs: its HF name, expected shape, and where it goes.
// linear: one of a layer's frozen linear weights (what model.quantize applies to); q: the type it is
// quantized to at load, DT_F32 for none; stored: a quantized file tensor copied to the device as it is
// (its type's blocks, which the device decodes).
typedef struct {
    char name[192];
    int ndim;
    int64_t shape[2];
    dt_tensor *dst;
    bool in_place, linear, stored;
    dt_dtype q;  // quantized at load as q (DT_F32: not)
    dt_dtype kt; // kept as kt when not quantized: the load's wtype for matrices, f32 for vectors
} weight_spec;

static int add_spec(weight_spec *s, int *n, const char *name, int ndim, int64_t d0, int64_t d1, dt_tensor *dst) {
    weight_spec *w = &s[(*n)++];
    snprintf(w->name, sizeof w->name, "%s", name);
    w->ndim = ndim;
    w->shape[0] = d0;
    w->shape[1] = d1;
    w->dst = dst;
    w->in_place = w->linear = w->stored = false;
    w->q = DT_F32;
    return 0;
}

// The list of tensors this config needs, with their shapes; its order is the order of the block.
static int weight_specs(dt_llama *m, weight_spec *s) {
    const dt_model_config *c = &m->cfg;
    int64_t D = c->hidden_size, H = c->num_heads, KV = c->num_kv_heads, hd = c->head_dim, I = c->intermediate_size;
    int n = 0;
    char name[192];
    add_spec(s, &n, dt_tn_global(DT_GT_EMBED), 2, c->vocab_size, D, &m->embed);
    for (int l = 0; l < c->num_layers; l++) {
        dt_llama_layer *ly = &m->layers[l];
        const int64_t out[DT_MOD_COUNT] = {H * hd, KV * hd, KV * hd, D, I, I, D};
        const int64_t in[DT_MOD_COUNT] = {D, D, D, H * hd, D, D, I};
        for (int t = 0; t < DT_MOD_COUNT; t++) {
            dt_tn_layer(name, sizeof name, l, (dt_layer_tensor)t);
            add_spec(s, &n, name, 2, out[t], in[t], &ly->w[t]);
            s[n - 1].linear = true;
        }
        if (c->attention_bias) {
            dt_tn_layer(name, sizeof name, l, DT_LT_Q_BIAS); add_spec(s, &n, name, 1, H * hd, 1, &ly->q_bias);
            dt_tn_layer(name, sizeof name, l, DT_LT_K_BIAS); add_spec(s, &n, name, 1, KV * hd, 1, &ly->k_bias);
            dt_tn_layer(name, sizeof name, l, DT_LT_V_BIAS); add_spec(s, &n, name, 1, KV * hd, 1, &ly->v_bias);
            if (c->arch != DT_ARCH_QWEN2) { // Qwen2's o_proj never has one
                dt_tn_module(name, sizeof name, "", l, DT_MOD_O, ".bias"); add_spec(s, &n, name, 1, D, 1, &ly->o_bias);
            }
        }
        if (c->qk_norm) {
            dt_tn_layer(name, sizeof name, l, DT_LT_Q_NORM); add_spec(s, &n, name, 1, hd, 1, &ly->q_norm);
            dt_tn_layer(name, sizeof name, l, DT_LT_K_NORM); add_spec(s, &n, name, 1, hd, 1, &ly->k_norm);
        }
        dt_tn_layer(name, sizeof name, l, DT_LT_ATTN_NORM); add_spec(s, &n, name, 1, D, 1, &ly->attn_norm);
        dt_tn_layer(name, sizeof name, l, DT_LT_FFN_NORM); add_spec(s, &n, name, 1, D, 1, &ly->ffn_norm);
    }
    add_spec(s, &n, dt_tn_global(DT_GT_NORM), 1, D, 1, &m->norm);
    if (!c->tie_word_embeddings) add_spec(s, &n, dt_tn_global(DT_GT_LM_HEAD), 2, c->vocab_size, D, &m->lm_head);
    return n;
}

// RoPE inverse frequencies as transformers computes them, including the llama3 long-context rescaling.
static void rope_inv_freq(const dt_model_config *c, float *out) {
    int64_t hd = c->head_dim;
    for (int64_t i = 0; i < hd / 2; i++) {
        double f = 1.0 / pow((double)c->rope_theta, (double)(2 * i) / (double)hd);
        if (c->rope_scaling_type == DT_ROPE_LLAMA3) {
            double old = c->rope_original_max_pos, factor = c->rope_factor;
            double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            double wavelen = 2.0 * M_PI / f;
            double low_wavelen = old / lo, high_wavelen = old / hi;
            if (wavelen > low_wavelen) {
                f = f / factor;               // long wavelengths: fully interpolated
            } else if (wavelen >= high_wavelen) {
                double smooth = (old / wavelen - lo) / (hi - lo); // medium: blend of both
                f = (1.0 - smooth) * f / factor + smooth * f;
            }                                  // short wavelengths: unchanged
        }
        out[i] = (float)f;
    }
}

void dt_llama_free(dt_llama *m) {
    if (!m) return;
    if (m->block) m->be->free(m->be, m->block);
    dt_weights_close(m->src);
    free(m->layers);
    free(m->dev_nf4);
    if (m->owns_be) dt_cpu_backend_release(m->be);
    free(m);
}

static int load(dt_ctx *ctx, const char *path, const dt_backend *be, dt_dtype wtype, const dt_load_opts *o, dt_llama **out);

int dt_llama_load(dt_ctx *ctx, const char *path, const dt_backend *be, dt_llama **out) {
    return dt_llama_load_typed(ctx, path, be, DT_F32, out);
}

int dt_llama_load_ex(dt_ctx *ctx, const char *path, const dt_backend *be, const dt_load_opts *o, dt_llama **out) {
    return load(ctx, path, be, o ? o->wtype : DT_F32, o, out);
}

int dt_llama_load_typed(dt_ctx *ctx, const char *path, const dt_backend *be, dt_dtype wtype, dt_llama **out) {
    return load(ctx, path, be, wtype, NULL, out);
}

// The safetensors dtype that holds a tensor of dtype t as is (DT_ST_I64 stands for none).
static dt_st_dtype st_of(dt_dtype t) {
    return t == DT_F32 ? DT_ST_F32 : t == DT_BF16 ? DT_ST_BF16 : t == DT_F16 ? DT_ST_F16 : DT_ST_I64;
}

// Quantizes src (the f32 values of linear s) as s->q into the weight block at p (dt_lq_bytes bytes): in
// place on the CPU; for a device on the host first, then copied (NF4/FP4: the nibbles and the state's
// arrays, the state itself kept in m->dev_nf4[*n_nf4]; a ggml type: the blocks alone).
static int place_quantized(dt_ctx *ctx, dt_llama *m, weight_spec *s, bool double_quant, const float *src, uint8_t *p,
                           int *n_nf4) {
    const dt_backend *be = m->be;
    const size_t qb = dt_lq_bytes(s->q, double_quant, s->shape[0], s->shape[1]);
    void *host = be->device == DT_DEV_CPU ? p : malloc(qb);
    if (!host) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    int rc = dt_lq_fill(ctx, s->name, s->q, double_quant, src, s->shape[0], s->shape[1], host, s->dst);
    if (!rc && host != p) {
        if (s->dst->aux) {
            dt_lq_upload_nf4(be, p, s->dst->aux, s->dst->data, s->shape[0] * s->shape[1], &m->dev_nf4[*n_nf4],
                             &s->dst->data);
            s->dst->aux = &m->dev_nf4[(*n_nf4)++];
        } else {
            be->upload(be, p, host, qb);
            s->dst->data = p;
        }
        s->dst->device = be->device;
    }
    if (host != p) free(host);
    return rc;
}

// The type matrix s is kept in under wtype: wtype itself, or under DT_DTYPE_STORED the file tensor t's
// (dt_weights_stored_type; a missing tensor counts as f32: the load refuses it).
static dt_dtype kept_type(const weight_spec *s, const dt_st_tensor *t, dt_dtype wtype) {
    if (s->ndim != 2) return DT_F32;
    return wtype == DT_DTYPE_STORED ? dt_weights_stored_type(t) : wtype;
}

// wtype: the matrices' float type, or DT_DTYPE_STORED (the CPU only); o: linear weights quantized at load
// (NULL: none).
static int load(dt_ctx *ctx, const char *path, const dt_backend *be, dt_dtype wtype, const dt_load_opts *o, dt_llama **out) {
    *out = NULL;
    const dt_dtype quantize = o ? o->quantize : DT_F32;
    // On a device, quantized weights are copied as they are and decoded there (autograd/cuda/dequant.cu):
    // ggml's blocks alone; NF4/FP4 with their state's arrays (dt_lq_upload_nf4).
    if (wtype != DT_F32 && wtype != DT_BF16 && wtype != DT_F16 && !(wtype == DT_DTYPE_STORED && be->device == DT_DEV_CPU))
        return dt_fail(ctx, DT_EINPUT, "%s: weight dtype %s is not supported (expected f32, bf16 or f16)", path,
                       dt_dtype_choice_name(wtype));
    dt_llama *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    m->be = be;
    m->wtype = wtype;
    int rc = dt_weights_open(ctx, path, &m->cfg, &m->src);
    if (rc) { free(m); return rc; }
    const dt_model_config *c = &m->cfg;
    if (c->head_dim > 512 || c->head_dim % 2) { // the message reads the config, so it is written before the free
        rc = dt_fail(ctx, DT_EINPUT, "%s: head_dim %d is not supported (even, at most 512)", path, c->head_dim);
        dt_llama_free(m);
        return rc;
    }
    m->layers = calloc((size_t)c->num_layers, sizeof *m->layers);
    weight_spec *specs = calloc((size_t)c->num_layers * 16 + 8, sizeof *specs);
    const dt_st_tensor **found = calloc((size_t)c->num_layers * 16 + 8, sizeof *found);
    if (!m->layers || !specs || !found) { free(specs); free(found); dt_llama_free(m); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    int n = weight_specs(m, specs), n_nf4 = 0;
    if (be->device != DT_DEV_CPU && !(m->dev_nf4 = calloc((size_t)n, sizeof *m->dev_nf4))) {
        free(specs);
        free(found);
        dt_llama_free(m);
        return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    // First pass: check presence and shape, decide which tensors are used in place in the mapping.
    // Matrices are kept in wtype, vectors (norms, biases) in f32; a tensor whose file dtype is already
    // its kept dtype, suitably aligned, is used in place (the page cache's copy, never duplicated).
    size_t bytes = (size_t)(c->head_dim / 2) * sizeof(float), params = 0;
    for (int i = 0; i < n; i++) {
        weight_spec *s = &specs[i];
        const dt_st_tensor *t = found[i] = dt_weights_find(m->src, s->name);
        int64_t numel = s->ndim == 2 ? s->shape[0] * s->shape[1] : s->shape[0];
        const dt_dtype kt = s->kt = kept_type(s, t, wtype);
        if (wtype == DT_DTYPE_STORED && kt != DT_F32 && m->wtype == DT_DTYPE_STORED) m->wtype = kt;
        params += (size_t)numel;
        const bool fits = t && t->ndim == s->ndim && t->shape[0] == s->shape[0] && (s->ndim == 1 || t->shape[1] == s->shape[1]);
        if (quantize != DT_F32 && s->linear) { // quantized at load (model.quantize)
            if (t && t->st_dtype == DT_ST_BLOCK) {
                free(specs);
                free(found);
                dt_llama_free(m);
                return dt_fail(ctx, DT_EINPUT, "%s: model.quantize %s: the base is already quantized (tensor '%s' is %s)",
                               path, dt_dtype_name(quantize), s->name, dt_dtype_name(t->dtype));
            }
            s->q = quantize;
            bytes += dt_lq_bytes(quantize, o->double_quant, s->shape[0], s->shape[1]);
        } else if (fits && be->device != DT_DEV_CPU && t->st_dtype == DT_ST_BLOCK && s->ndim == 2 &&
                   (t->dtype == DT_NF4 || t->dtype == DT_FP4) && t->aux) {
            // A bitsandbytes 4-bit base on a device: the nibbles and the state's arrays as they are.
            s->stored = true;
            bytes += dt_lq_device_bytes(t->aux, numel);
        } else if (fits && be->device != DT_DEV_CPU && t->st_dtype == DT_ST_BLOCK && s->ndim == 2 && !t->aux &&
                   t->dtype >= DT_Q8_0 && t->dtype <= DT_Q6_K) {
            // A GGUF base on a device: the blocks as they are.
            s->stored = true;
            bytes += (dt_type_row_bytes(t->dtype, s->shape[1]) * (size_t)s->shape[0] + 63) & ~(size_t)63;
        } else if (fits && be->device == DT_DEV_CPU && t->st_dtype == DT_ST_BLOCK) {
            // A quantized base (GGUF, bitsandbytes) stays quantized: a view of the file, state in aux.
            s->in_place = true;
            dt_tensor_set(s->dst, t->dtype, (void *)t->data, s->ndim, s->shape);
            s->dst->aux = t->aux;
        } else if (fits && be->device == DT_DEV_CPU && t->st_dtype == st_of(kt) &&
                   ((uintptr_t)t->data & (dt_dtype_size(kt) - 1)) == 0) {
            s->in_place = true;
            dt_tensor_set(s->dst, kt, (void *)t->data, s->ndim, s->shape);
        } else {
            bytes += ((size_t)numel * dt_dtype_size(kt) + 63) & ~(size_t)63;
        }
    }
    if (m->wtype == DT_DTYPE_STORED) m->wtype = DT_F32; // no 16-bit matrix in the file
    rc = dt_weights_check_unused(ctx, m->src, found, n, c->tie_word_embeddings);
    free(found);
    if (rc) { free(specs); dt_llama_free(m); return rc; }
    m->block = be->alloc(be, bytes);
    m->block_bytes = bytes;
    if (!m->block) { free(specs); dt_llama_free(m); return dt_fail(ctx, DT_ENOMEM, "cannot allocate %zu bytes for weights", bytes); }
    // Second pass: convert the rest into the block (on the host first for a device backend).
    uint8_t *p = m->block;
    for (int i = 0; i < n && !rc; i++) {
        weight_spec *s = &specs[i];
        if (s->in_place) continue;
        int64_t numel = s->ndim == 2 ? s->shape[0] * s->shape[1] : s->shape[0];
        const dt_dtype kt = s->kt;
        size_t nb = (size_t)numel * dt_dtype_size(kt);
        if (s->q != DT_F32) { // one f32 tensor at a time, quantized into the block
            float *tmp = malloc((size_t)numel * sizeof(float));
            rc = tmp ? dt_weights_read_f32(ctx, m->src, s->name, tmp, s->ndim, s->shape) : dt_fail(ctx, DT_ENOMEM, "out of memory");
            if (!rc && (rc = place_quantized(ctx, m, s, o->double_quant, tmp, p, &n_nf4))) dt_prefix(ctx, rc, "%s: ", path);
            free(tmp);
            p += dt_lq_bytes(s->q, o->double_quant, s->shape[0], s->shape[1]);
            continue;
        }
        if (s->stored) { // a quantized file tensor to the device as it is
            const dt_st_tensor *t = dt_weights_find(m->src, s->name);
            size_t qb = dt_type_row_bytes(t->dtype, s->shape[1]) * (size_t)s->shape[0];
            void *data = p;
            if (t->aux) {
                qb = dt_lq_device_bytes(t->aux, numel);
                dt_lq_upload_nf4(be, p, t->aux, t->data, numel, &m->dev_nf4[n_nf4], &data);
            } else {
                be->upload(be, p, t->data, qb);
            }
            dt_tensor_set(s->dst, t->dtype, data, s->ndim, s->shape);
            s->dst->aux = t->aux ? &m->dev_nf4[n_nf4++] : NULL;
            s->dst->device = be->device;
            s->dst->name = NULL;
            p += (qb + 63) & ~(size_t)63;
            continue;
        }
        if (be->device == DT_DEV_CPU) {
            rc = dt_weights_read_as(ctx, m->src, s->name, kt, p, s->ndim, s->shape);
        } else { // converted on the host (bf16/f16 matrices stay 16-bit on the device), then copied
            void *tmp = malloc(nb);
            rc = tmp ? dt_weights_read_as(ctx, m->src, s->name, kt, tmp, s->ndim, s->shape)
                     : dt_fail(ctx, DT_ENOMEM, "out of memory");
            if (!rc) be->upload(be, p, tmp, nb);
            free(tmp);
        }
        dt_tensor_set(s->dst, kt, p, s->ndim, s->shape);
        s->dst->device = be->device;
        s->dst->name = NULL;
        p += (nb + 63) & ~(size_t)63;
    }
    free(specs);
    if (rc) { dt_llama_free(m); return rc; }
    float freq[256];
    rope_inv_freq(c, freq);
    const float *factors = dt_weights_rope_factors(m->src); // a GGUF base's llama3 scaling
    for (int i = 0; factors && i < c->head_dim / 2; i++) freq[i] /= factors[i];
    m->inv_freq = (float *)p;
    be->upload(be, m->inv_freq, freq, (size_t)(c->head_dim / 2) * sizeof(float));
    if (c->tie_word_embeddings) m->lm_head = m->embed;
    m->param_count = params;
    *out = m;
    return DT_OK;
}

int dt_llama_load_cpu(dt_ctx *ctx, const char *path, dt_dtype requested, const char *what, dt_llama **out) {
    return dt_llama_load_cpu_ex(ctx, path, requested, what, NULL, out);
}

int dt_llama_load_cpu_ex(dt_ctx *ctx, const char *path, dt_dtype requested, const char *what, const dt_load_opts *o,
                         dt_llama **out) {
    *out = NULL;
    dt_dtype t;
    const dt_backend *be;
    int rc = dt_dtype_resolve(ctx, requested, DT_DEV_CPU, what, &t);
    if (!rc) rc = dt_cpu_backend_for(ctx, t, &be);
    if (rc) return rc;
    rc = load(ctx, path, be, t, o, out);
    if (rc) { dt_cpu_backend_release(be); return rc; }
    (*out)->owns_be = be != dt_backend_cpu();
    return DT_OK;
}

int dt_llama_init_random(dt_ctx *ctx, const dt_model_config *cfg, const dt_backend *be, uint64_t seed, dt_llama **out) {
    return dt_llama_init_random_typed(ctx, cfg, be, seed, DT_F32, out);
}

int dt_llama_init_random_typed(dt_ctx *ctx, const dt_model_config *cfg, const dt_backend *be, uint64_t seed,
                               dt_dtype wtype, dt_llama **out) {
    const dt_load_opts o = {.quantize = DT_F32, .wtype = wtype};
    return dt_llama_init_random_ex(ctx, cfg, be, seed, &o, out);
}

// Bytes spec s takes in a random model's block: quantized as s->q, or in its dtype, 64-byte aligned.
static size_t random_spec_bytes(const weight_spec *s, const dt_load_opts *o) {
    if (s->q != DT_F32) return dt_lq_bytes(s->q, o->double_quant, s->shape[0], s->shape[1]);
    const size_t numel = (size_t)(s->ndim == 2 ? s->shape[0] * s->shape[1] : s->shape[0]);
    return (numel * dt_dtype_size(s->ndim == 2 ? o->wtype : DT_F32) + 63) & ~(size_t)63;
}

int dt_llama_init_random_ex(dt_ctx *ctx, const dt_model_config *cfg, const dt_backend *be, uint64_t seed,
                            const dt_load_opts *o, dt_llama **out) {
    *out = NULL;
    const dt_dtype wtype = o->wtype;
    if (dt_config_validate(ctx, cfg, "random model config")) return DT_EINPUT;
    if (wtype != DT_F32 && wtype != DT_BF16 && wtype != DT_F16)
        return dt_fail(ctx, DT_EINPUT, "random model: weight dtype %s is not f32, bf16 or f16", dt_dtype_name(wtype));
    dt_llama *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    m->be = be;
    m->cfg = *cfg;
    m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers);
    weight_spec *specs = calloc((size_t)cfg->num_layers * 16 + 8, sizeof *specs);
    if (!m->layers || !specs) { free(specs); dt_llama_free(m); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    int n = weight_specs(m, specs), n_nf4 = 0;
    if (be->device != DT_DEV_CPU && !(m->dev_nf4 = calloc((size_t)n, sizeof *m->dev_nf4))) {
        free(specs);
        dt_llama_free(m);
        return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    // Matrices take wtype, the linears o->quantize when it is set (as load quantizes them); vectors
    // (norms, biases) stay f32.
    size_t bytes = (size_t)(cfg->head_dim / 2) * sizeof(float), params = 0;
    for (int i = 0; i < n; i++) {
        weight_spec *s = &specs[i];
        size_t numel = (size_t)(s->ndim == 2 ? s->shape[0] * s->shape[1] : s->shape[0]);
        params += numel;
        if (o->quantize != DT_F32 && s->linear) s->q = o->quantize;
        bytes += random_spec_bytes(s, o);
    }
    m->wtype = wtype;
    m->block = be->alloc(be, bytes);
    // On the CPU the weights are drawn straight into the block: a staging copy would double peak memory.
    // A quantized linear is drawn whole in f32 first (the quantizer's input).
    void *tmp = be->device == DT_DEV_CPU ? m->block : malloc(bytes);
    if (!m->block || !tmp) { if (tmp != m->block) free(tmp); free(specs); dt_llama_free(m); return dt_fail(ctx, DT_ENOMEM, "cannot allocate %zu bytes for weights", bytes); }
    m->block_bytes = bytes;
    dt_rng rng = {seed};
    size_t off = 0;
    float row[4096]; // values are drawn a chunk at a time, then stored in the tensor's dtype
    int rc = DT_OK;
    for (int i = 0; i < n && !rc; i++) {
        weight_spec *s = &specs[i];
        size_t numel = (size_t)(s->ndim == 2 ? s->shape[0] * s->shape[1] : s->shape[0]);
        if (s->q != DT_F32) {
            float *w = malloc(numel * sizeof(float));
            if (!w) { rc = dt_fail(ctx, DT_ENOMEM, "out of memory"); break; }
            for (size_t j = 0; j < numel; j++) w[j] = (float)(0.02 * dt_rng_normal(&rng));
            rc = place_quantized(ctx, m, s, o->double_quant, w, (uint8_t *)m->block + off, &n_nf4);
            free(w);
            off += random_spec_bytes(s, o);
            continue;
        }
        dt_dtype t = s->ndim == 2 ? wtype : DT_F32;
        size_t es = dt_dtype_size(t);
        uint8_t *w = (uint8_t *)tmp + off;
        for (size_t j = 0; j < numel; j += 4096) {
            size_t c = numel - j < 4096 ? numel - j : 4096;
            for (size_t q = 0; q < c; q++) row[q] = s->ndim == 1 ? 1.0f : (float)(0.02 * dt_rng_normal(&rng));
            dt_convert_from_f32(w + j * es, t, row, c);
        }
        dt_tensor_set(s->dst, t, (uint8_t *)m->block + off, s->ndim, s->shape);
        s->dst->device = be->device;
        off += random_spec_bytes(s, o);
    }
    if (rc) { if (tmp != m->block) free(tmp); free(specs); dt_llama_free(m); return rc; }
    rope_inv_freq(cfg, (float *)((uint8_t *)tmp + off));
    if (tmp != m->block) { // the staged block to the device, in runs around the pieces place_quantized put there
        size_t at = 0, run = 0;
        for (int i = 0; i < n; i++) {
            const size_t nb = random_spec_bytes(&specs[i], o);
            if (specs[i].q != DT_F32) {
                if (at > run) be->upload(be, (uint8_t *)m->block + run, (uint8_t *)tmp + run, at - run);
                run = at + nb;
            }
            at += nb;
        }
        be->upload(be, (uint8_t *)m->block + run, (uint8_t *)tmp + run, bytes - run); // the rest, rope frequencies too
        free(tmp);
    }
    free(specs);
    m->inv_freq = (float *)((uint8_t *)m->block + off);
    if (cfg->tie_word_embeddings) m->lm_head = m->embed;
    m->param_count = params;
    *out = m;
    return DT_OK;
}

int64_t dt_llama_out_len(const dt_llama_adapters *ad, int64_t T) {
    return T + (ad && ad->prompt ? ad->prompt->shape[0] : 0);
}

int64_t dt_llama_cache_front(const dt_llama_adapters *ad) {
    if (!ad) return 0;
    return (ad->kv_prefix.fn ? ad->kv_prefix.n : 0) + (ad->prompt ? ad->prompt->shape[0] : 0);
}

int64_t dt_count_targets(const int32_t *labels, int64_t B, int64_t T, int64_t n_virtual) {
    int64_t n = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = n_virtual > 0 ? 0 : 1; t < T; t++) n += labels[b * T + t] != -100;
    return n;
}

// What one decoder layer needs besides its input; lives in the step's host arena.
typedef struct {
    const dt_llama *m;
    int l;
    const dt_linear_hook *const *hook; // (DT_MOD_COUNT) the methods' hooks on this layer's linears, or NULL
    const dt_llama_site *site;      // or NULL
    const float *rope_cs;           // (B*Tp, hd) cos/sin table of the positions, device
    const int32_t *seg;             // (B*T) device array or NULL
    const int32_t *seg_host;        // (B*T) the same on the host (step arena), or NULL
    const dt_llama_kv_prefix *kvp;  // key/value entries in front of every example, or NULL
    dt_kv_cache *kv;                // generation's cache, or NULL
    int64_t n_ext;                  // with kv: kvp's entries to write into the (empty) cache first, else 0
} layer_arg;

// out[i] rewritten by the adapters' site when it claims module mods[i] of this layer. Returns -1 when the
// graph failed.
static int apply_sites(dt_graph *g, const layer_arg *arg, int n, const int *mods, dt_tensor **out) {
    const dt_llama_site *s = arg->site;
    for (int i = 0; s && i < n; i++)
        if (s->at[(size_t)arg->l * DT_MOD_COUNT + (size_t)mods[i]] && !(out[i] = s->fn(g, s->self, arg->m, arg->l, mods[i], out[i])))
            return -1;
    return 0;
}

static bool claimed(const layer_arg *arg, int mod) {
    return arg->site && arg->site->at[(size_t)arg->l * DT_MOD_COUNT + (size_t)mod];
}

// residual + the projection mod of a: fused, or unfused when a site rewrites the projection's output.
static dt_tensor *proj_add(dt_graph *g, const layer_arg *arg, int mod, dt_tensor *a, const dt_linear_hook *hook,
                           dt_tensor *residual) {
    const dt_tensor *W = &arg->m->layers[arg->l].w[mod];
    const dt_tensor *bias = mod == DT_MOD_O && arg->m->layers[arg->l].o_bias.data ? &arg->m->layers[arg->l].o_bias : NULL;
    if (!claimed(arg, mod)) return dt_linear_add(g, a, W, bias, hook, residual);
    dt_tensor *h = dt_linear(g, a, W, bias, hook); // (B, Tp, out)
    if (!h || apply_sites(g, arg, 1, &mod, &h)) return NULL;
    return dt_add(g, residual, h);
}

// One decoder layer: x (B, Tp, D) -> x + attention + MLP.
static dt_tensor *layer_forward(dt_graph *g, const void *argp, dt_tensor *x) {
    const layer_arg *arg = argp;
    const dt_llama *m = arg->m;
    const dt_model_config *c = &m->cfg;
    const int64_t H = c->num_heads, KV = c->num_kv_heads, hd = c->head_dim;
    const dt_llama_layer *ly = &m->layers[arg->l];
    const dt_linear_hook *const *hook = arg->hook;
    const int32_t *seg_d = arg->seg;
#define HOOK(mod) (hook ? hook[mod] : NULL)
    // q, k, v share one normalised input, recomputed in their backward instead of kept.
    const dt_tensor *wqkv[3] = {&ly->w[DT_MOD_Q], &ly->w[DT_MOD_K], &ly->w[DT_MOD_V]};
    const dt_tensor *bqkv[3] = {&ly->q_bias, &ly->k_bias, &ly->v_bias};
    const dt_linear_hook *lqkv[3] = {HOOK(DT_MOD_Q), HOOK(DT_MOD_K), HOOK(DT_MOD_V)};
    dt_tensor *qkv[3]; // (B, Tp, H*hd), (B, Tp, KV*hd), (B, Tp, KV*hd)
    if (dt_norm_linears(g, x, &ly->attn_norm, c->rms_norm_eps, 3, wqkv, c->attention_bias ? bqkv : NULL, lqkv, qkv) ||
        apply_sites(g, arg, 3, (const int[]){DT_MOD_Q, DT_MOD_K, DT_MOD_V}, qkv))
        return NULL;
    dt_tensor *q = qkv[0], *k = qkv[1], *v = qkv[2];
    if (c->qk_norm) { // Qwen3: RMSNorm over each head, before RoPE
        q = dt_rmsnorm(g, q, &ly->q_norm, c->rms_norm_eps);
        k = dt_rmsnorm(g, k, &ly->k_norm, c->rms_norm_eps);
    }
    q = dt_rope_(g, q, H, hd, arg->rope_cs);
    k = dt_rope_(g, k, KV, hd, arg->rope_cs);
    dt_tensor *a; // (B, Tp, H*hd)
    const dt_llama_kv_prefix *kvp = arg->kvp;
    if (arg->kv) { // generation: this layer's cache (cap, KV*hd) holds the earlier positions
        const size_t off = (size_t)arg->l * (size_t)arg->kv->cap * (size_t)(KV * hd);
        float *kc = arg->kv->k + off, *vc = arg->kv->v + off;
        if (arg->n_ext && (dt_kv_write(g, kc, 0, kvp->fn(g, kvp->self, m, arg->l, 0)) ||
                           dt_kv_write(g, vc, 0, kvp->fn(g, kvp->self, m, arg->l, 1))))
            return NULL;
        a = dt_attention_cached(g, q, k, v, H, KV, hd, kc, vc, arg->kv->len + arg->n_ext);
    } else if (kvp) { // every example sees the n entries first (k, v (n, KV*hd) each)
        a = dt_attention_ext(g, q, k, v, kvp->fn(g, kvp->self, m, arg->l, 0), kvp->fn(g, kvp->self, m, arg->l, 1), H,
                             KV, hd, arg->seg_host);
    } else {
        a = dt_attention(g, q, k, v, H, KV, hd, seg_d);
    }
    x = proj_add(g, arg, DT_MOD_O, a, HOOK(DT_MOD_O), x);                     // (B, Tp, D)
    // gate and up share one normalised input too.
    const dt_tensor *wgu[2] = {&ly->w[DT_MOD_GATE], &ly->w[DT_MOD_UP]};
    const dt_linear_hook *lgu[2] = {HOOK(DT_MOD_GATE), HOOK(DT_MOD_UP)};
    dt_tensor *gu[2]; // (B, Tp, I) each
    if (dt_norm_linears(g, x, &ly->ffn_norm, c->rms_norm_eps, 2, wgu, NULL, lgu, gu) ||
        apply_sites(g, arg, 2, (const int[]){DT_MOD_GATE, DT_MOD_UP}, gu))
        return NULL;
    dt_tensor *gate = gu[0], *up = gu[1];
    if (claimed(arg, DT_MOD_DOWN)) { // the site needs down's own output: unfused
        dt_tensor *h = dt_swiglu_linear(g, gate, up, &ly->w[DT_MOD_DOWN], HOOK(DT_MOD_DOWN), NULL); // (B, Tp, D)
        if (apply_sites(g, arg, 1, (const int[]){DT_MOD_DOWN}, &h)) return NULL;
        x = dt_add(g, x, h);
    } else {
        x = dt_swiglu_linear(g, gate, up, &ly->w[DT_MOD_DOWN], HOOK(DT_MOD_DOWN), x); // (B, Tp, D)
    }
#undef HOOK
    return x;
}

// The one forward: training and evaluation (kv NULL) and generation (kv, see dt_llama_forward_cached).
static int forward(dt_ctx *ctx, dt_graph *g, const dt_llama *m, const dt_llama_adapters *ad, const dt_batch *b,
                   dt_kv_cache *kv, float denom, bool want_logits, dt_llama_out *out) {
    const dt_model_config *c = &m->cfg;
    const int64_t B = b->B, T = b->T;
    // The virtual tokens come first: at position 0 of a plain forward, or into an empty cache. Key/value
    // prefix entries come before them (E positions, taking positions 0..E-1 as a cache would).
    const bool front = !kv || kv->len == 0;
    dt_tensor *prompt = ad && front ? ad->prompt : NULL;
    const dt_llama_kv_prefix *kvp = ad && ad->kv_prefix.fn ? &ad->kv_prefix : NULL;
    const int64_t E = kvp && front ? kvp->n : 0;
    const int64_t P = prompt ? prompt->shape[0] : 0, Tp = T + P; // positions after the virtual tokens
    const int64_t p0 = (kv ? kv->len : 0) + E;                   // position of the first row fed
    memset(out, 0, sizeof *out);
    if (kv && (B != 1 || b->labels || b->pos || b->seg_start || g->grad_enabled))
        return dt_fail(ctx, DT_EINTERNAL, "a KV-cache forward takes one row, no labels, positions or packing, grad off");
    if (kv && p0 + Tp > kv->cap)
        return dt_fail(ctx, DT_EINPUT, "the context is full (%lld positions)", (long long)kv->cap);
    if (prompt && b->seg_start)
        return dt_fail(ctx, DT_EINPUT, "prompt tuning cannot be combined with packed sequences (data.packing)");
    if (c->sliding_window > 0) {
        // The attention has no sliding-window mask: a query that could see more than sliding_window keys
        // would attend where transformers masks, so such a forward is refused, not computed differently.
        // Up to sliding_window keys the mask is full under both windows transformers has used (the last
        // W or W+1 positions), so every shorter forward is exact.
        int64_t span = 0; // the most keys one text query sees in its own sequence (segment when packed)
        for (int64_t i = 0; i < B * T; i++) {
            int64_t t = i % T, s = b->seg_start ? t - b->seg_start[i] + 1 : t + 1;
            if (s > span) span = s;
        }
        span += p0 + P;
        if (span > c->sliding_window)
            return dt_fail(ctx, DT_EUNSUPPORTED, "a sequence of %lld positions is longer than the model's sliding_window "
                           "(%d), and sliding-window attention is not supported: keep each sequence within %d positions (eval --max-seq-len, "
                           "data.max_seq_len)",
                           (long long)span, c->sliding_window, c->sliding_window);
    }
    for (int64_t i = 0; i < B * T; i++)
        if (b->input_ids[i] < 0 || b->input_ids[i] >= c->vocab_size)
            return dt_fail(ctx, DT_EINPUT, "token id %d at position %lld is outside the vocabulary (%d)",
                           b->input_ids[i], (long long)i, c->vocab_size);
    // Position ids from p0: the virtual tokens take the first P and the text follows, as PEFT's prompt tuning
    // does. Key/value prefix entries hold positions 0..E-1 without being rotated, so the text starts at E,
    // as in transformers given PEFT's prefix as past_key_values (cache_position = past length + t).
    int32_t *pos = dt_arena_alloc(&g->host, (size_t)(B * Tp) * sizeof(int32_t)); // (B, Tp)
    if (!pos) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    for (int64_t r = 0; r < B; r++)
        for (int64_t t = 0; t < Tp; t++)
            pos[r * Tp + t] = (int32_t)p0 + (t < P ? (int32_t)t : (int32_t)(P + (b->pos ? b->pos[r * T + t - P] : t - P)));
    const int32_t *pos_d = dt_graph_ints(g, pos, B * Tp);
    const float *rope_cs = pos_d ? dt_rope_table(g, pos_d, m->inv_freq, B * Tp, c->head_dim) : NULL;
    const int32_t *seg_d = b->seg_start ? dt_graph_ints(g, b->seg_start, B * T) : NULL;
    // A host copy for the key/value prefix's layout, kept in the step arena: a checkpointed layer reads it
    // again in the backward, after the caller's batch may be gone.
    int32_t *seg_h = kvp && b->seg_start ? dt_arena_alloc(&g->host, (size_t)(B * T) * sizeof(int32_t)) : NULL;
    if (kvp && b->seg_start && !seg_h) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (seg_h) memcpy(seg_h, b->seg_start, (size_t)(B * T) * sizeof(int32_t));

    const int32_t *ids_d = dt_graph_ints(g, b->input_ids, B * T);
    dt_tensor *x = dt_embedding(g, ids_d, B, T, &m->embed); // (B, T, D)
    if (ad && ad->embed.fn && x) x = ad->embed.fn(g, ad->embed.self, m, ids_d, x);
    if (prompt) x = dt_prompt_concat(g, prompt, x);                                          // (B, Tp, D)
    for (int l = 0; l < c->num_layers; l++) {
        layer_arg *arg = dt_arena_alloc(&g->host, sizeof *arg);
        if (!arg) return dt_fail(ctx, DT_ENOMEM, "out of memory");
        *arg = (layer_arg){m, l, ad && ad->linear ? ad->linear + (size_t)l * DT_MOD_COUNT : NULL,
                           ad && ad->site.fn ? &ad->site : NULL, rope_cs, seg_d, seg_h, kvp, kv, kv ? E : 0};
        // A compact layer (graph.h) when the backend has bf16 conversions and every op of the layer keeps
        // its own saved values: not with sites or qk-norm (generic ops that keep f32 tensors), nor
        // without gradients (nothing is kept). A checkpointed layer is compact in its recompute.
        bool compact = g->grad_enabled && !arg->site && !kvp && !kv && !c->qk_norm && g->be->to_bf16;
        if (!g->grad_enabled) {
            x = dt_no_grad_block(g, layer_forward, arg, x); // eval, generate: one layer's memory at a time
        } else if (g->checkpoint_layers) {
            x = dt_checkpoint(g, layer_forward, arg, x, compact);
        } else {
            if (compact) dt_graph_compact_begin(g);
            x = layer_forward(g, arg, x);
            if (compact) dt_graph_compact_end(g, x);
        }
    }
    dt_tensor *xf = dt_rmsnorm(g, x, &m->norm, c->rms_norm_eps); // (B, Tp, D)
    if (!xf) return g->failed ? DT_ENOMEM : dt_fail(ctx, DT_EINTERNAL, "forward failed");
    out->hidden = xf;
    if (want_logits) {
        bool keep = g->grad_enabled;
        g->grad_enabled = false; // logits are for reading, the loss below has its own fused path
        dt_tensor *rows = xf;    // (B, Tp, D); with a KV cache only the last position (1, 1, D)
        if (kv && (rows = dt_arena_alloc(&g->host, sizeof *rows)))
            dt_tensor_set(rows, DT_F32, dt_f32(xf) + (Tp - 1) * c->hidden_size, 3, (int64_t[]){1, 1, c->hidden_size});
        const dt_linear_hook *head = ad ? ad->lm_head : NULL;
        out->logits = rows ? dt_linear(g, rows, &m->lm_head, NULL, head) : NULL; // (B, Tp, V) or (1, 1, V)
        g->grad_enabled = keep;
        if (!out->logits) return DT_ENOMEM;
    }
    if (kv) kv->len += E + Tp;
    if (b->labels) {
        // targets[t] = labels'[t+1], where labels' is labels with P ignored positions in front.
        int32_t *tg = dt_arena_alloc(&g->host, (size_t)(B * Tp) * sizeof(int32_t)); // (B, Tp)
        if (!tg) return dt_fail(ctx, DT_ENOMEM, "out of memory");
        for (int64_t r = 0; r < B; r++)
            for (int64_t t = 0; t < Tp; t++) {
                int64_t next = t + 1 - P; // index of the next position in labels
                int32_t y = t + 1 < Tp && next >= 0 ? b->labels[r * T + next] : -100;
                if (y != -100 && (y < 0 || y >= c->vocab_size))
                    return dt_fail(ctx, DT_EINPUT, "label %d at position %lld is outside the vocabulary (%d)", y,
                                   (long long)(r * T + next), c->vocab_size);
                tg[r * Tp + t] = y;
            }
        out->n_targets = dt_count_targets(b->labels, B, T, P);
        float d = denom > 0 ? denom : (float)(out->n_targets > 0 ? out->n_targets : 1);
        out->loss = dt_lm_head_xent(g, xf, &m->lm_head, ad ? ad->lm_head : NULL, tg, d,
                                    &out->loss_sum);
        if (!out->loss) return DT_ENOMEM;
    }
    return g->failed ? DT_ENOMEM : DT_OK;
}

int dt_llama_forward(dt_ctx *ctx, dt_graph *g, const dt_llama *m, const dt_llama_adapters *ad, const dt_batch *b,
                     float denom, bool want_logits, dt_llama_out *out) {
    return forward(ctx, g, m, ad, b, NULL, denom, want_logits, out);
}

int dt_llama_forward_cached(dt_ctx *ctx, const dt_llama *m, const dt_llama_adapters *ad, const dt_batch *b,
                            dt_kv_cache *kv, dt_llama_out *out) {
    dt_graph_reset(&kv->g);
    kv->g.grad_enabled = false;
    kv->g.training = false;
    kv->g.checkpoint_layers = false;
    return forward(ctx, &kv->g, m, ad, b, kv, 0, true, out);
}

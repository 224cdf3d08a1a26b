// Quantize-on-load and the base's memory (see llama_quant.h).
#include "models/llama_quant.h"
#include <stdlib.h>
#include <string.h>
#include "autograd/dtype.h"
#include "autograd/quant.h"
#include "models/llama.h"

static size_t al64(size_t n) { return (n + 63) & ~(size_t)63; }

// NF4/FP4 pieces: the state, the nibbles, then absmax f32 (n_blocks) or, double-quantized, the u8 codes
// (n_blocks) and the f32 nested absmax (one per DT_BNB_NESTED_BLOCK blocks).
static size_t nf4_state_bytes(bool dq, int64_t nb) {
    size_t s = al64(sizeof(dt_nf4_state));
    if (dq) return s + al64((size_t)nb) + al64((size_t)((nb + DT_BNB_NESTED_BLOCK - 1) / DT_BNB_NESTED_BLOCK) * sizeof(float));
    return s + al64((size_t)nb * sizeof(float));
}

size_t dt_lq_bytes(dt_dtype q, bool dq, int64_t rows, int64_t cols) {
    size_t data = al64(dt_type_row_bytes(q, cols) * (size_t)rows);
    if (q == DT_NF4 || q == DT_FP4) data += nf4_state_bytes(dq, rows * cols / DT_QK_NF4);
    return data;
}

int dt_lq_fill(dt_ctx *ctx, const char *name, dt_dtype q, bool dq, const float *src, int64_t rows, int64_t cols, void *dst,
               dt_tensor *out) {
    const dt_type_traits *tr = dt_type_traits_of(q);
    if (!tr || !tr->quantized) return dt_fail(ctx, DT_EINTERNAL, "%s: %d is not a quantized type", name, (int)q);
    // ggml types: every row whole blocks; NF4/FP4: blocks of 64 over the flattened tensor, as bitsandbytes
    const int64_t need = tr->block, have = q == DT_NF4 || q == DT_FP4 ? rows * cols : cols;
    if (have % (q == DT_NF4 || q == DT_FP4 ? DT_QK_NF4 : need) || cols % 2)
        return dt_fail(ctx, DT_EINPUT, "model.quantize %s: tensor '%s' (%lld x %lld) does not split into whole blocks of %lld",
                       tr->name, name, (long long)rows, (long long)cols, (long long)(q == DT_NF4 || q == DT_FP4 ? DT_QK_NF4 : need));
    uint8_t *p = dst;
    const int64_t shape[2] = {rows, cols};
    if (q != DT_NF4 && q != DT_FP4) {
        tr->from_f32(src, p, rows * cols);
        dt_tensor_set(out, q, p, 2, shape);
        return DT_OK;
    }
    // NF4/FP4: the state first, so that out->aux stays valid as long as the block.
    const int64_t nb = rows * cols / DT_QK_NF4;
    dt_nf4_state *st = (dt_nf4_state *)p;
    memset(st, 0, sizeof *st);
    st->kind = q == DT_NF4 ? DT_4BIT_NF4 : DT_4BIT_FP4;
    st->block = DT_QK_NF4;
    dt_4bit_code(st->kind, st->code);
    uint8_t *qs = p + al64(sizeof *st), *rest = qs + al64(dt_type_row_bytes(q, cols) * (size_t)rows);
    float *absmax = dq ? malloc((size_t)nb * sizeof(float)) : (float *)rest;
    if (!absmax) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    dt_nf4_from_f32(st->code, DT_QK_NF4, src, rows * cols, qs, absmax);
    if (dq) {
        uint8_t *qa = rest;
        float *nested = (float *)(rest + al64((size_t)nb));
        dt_bnb_dynamic_map(st->nested_code);
        st->nested_block = DT_BNB_NESTED_BLOCK;
        dt_nf4_double_quant(absmax, nb, DT_BNB_NESTED_BLOCK, st->nested_code, qa, nested, &st->offset);
        st->qabsmax = qa;
        st->nested_absmax = nested;
        free(absmax);
    } else {
        st->absmax = absmax;
    }
    dt_tensor_set(out, q, qs, 2, shape);
    out->aux = st;
    return DT_OK;
}

// The sizes of st's arrays for nb blocks: absmax f32, or the u8 codes and the nested f32 absmax.
static void nf4_arrays(const dt_nf4_state *st, int64_t nb, size_t *first, size_t *nested) {
    *first = st->absmax ? (size_t)nb * sizeof(float) : (size_t)nb;
    *nested = st->absmax ? 0 : (size_t)((nb + st->nested_block - 1) / st->nested_block) * sizeof(float);
}

size_t dt_lq_device_bytes(const dt_nf4_state *st, int64_t numel) {
    size_t first, nested;
    nf4_arrays(st, numel / st->block, &first, &nested);
    return al64((size_t)numel / 2) + al64(first) + al64(nested);
}

void dt_lq_upload_nf4(const dt_backend *be, void *dst, const dt_nf4_state *st, const void *qs, int64_t numel,
                      dt_nf4_state *dev, void **dev_qs) {
    size_t first, nested;
    nf4_arrays(st, numel / st->block, &first, &nested);
    uint8_t *p = dst, *a = p + al64((size_t)numel / 2), *b = a + al64(first);
    be->upload(be, p, qs, (size_t)numel / 2);
    *dev = *st;
    if (st->absmax) {
        be->upload(be, a, st->absmax, first);
        dev->absmax = (const float *)a;
    } else {
        be->upload(be, a, st->qabsmax, first);
        be->upload(be, b, st->nested_absmax, nested);
        dev->qabsmax = a;
        dev->nested_absmax = (const float *)b;
    }
    *dev_qs = p;
}

// Bytes of one weight, NF4/FP4 state included.
static size_t tensor_bytes(const dt_tensor *t) {
    if (!t->data) return 0;
    size_t n = dt_nbytes(t);
    if ((t->dtype == DT_NF4 || t->dtype == DT_FP4) && t->aux) {
        size_t first, nested;
        nf4_arrays(t->aux, dt_numel(t) / ((const dt_nf4_state *)t->aux)->block, &first, &nested);
        n += first + nested;
    }
    return n;
}

size_t dt_llama_base_bytes(const dt_llama *m, size_t *quantized) {
    const dt_tensor *all[3] = {&m->embed, &m->norm, m->cfg.tie_word_embeddings ? NULL : &m->lm_head};
    size_t n = 0, q = 0;
    for (int i = 0; i < 3; i++)
        if (all[i]) {
            n += tensor_bytes(all[i]);
            if (dt_type_traits_of(all[i]->dtype)->quantized) q += tensor_bytes(all[i]);
        }
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const dt_llama_layer *ly = &m->layers[l];
        const dt_tensor *ts[] = {&ly->q_bias, &ly->k_bias, &ly->v_bias, &ly->q_norm, &ly->k_norm, &ly->attn_norm, &ly->ffn_norm};
        for (int k = 0; k < DT_MOD_COUNT; k++) {
            n += tensor_bytes(&ly->w[k]);
            if (dt_type_traits_of(ly->w[k].dtype)->quantized) q += tensor_bytes(&ly->w[k]);
        }
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) n += tensor_bytes(ts[k]);
    }
    if (quantized) *quantized = q;
    return n;
}

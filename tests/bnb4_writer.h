// Writes a bitsandbytes 4-bit checkpoint folder of a model loaded with NF4 double quantization, as
// transformers saves one (for tests/test_bnb4.c and tests/test_cuda_ops.c). The includer defines GQA,
// the folder whose config.json is copied.
#ifndef DT_TESTS_BNB4_WRITER_H
#define DT_TESTS_BNB4_WRITER_H
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "autograd/quant.h"
#include "models/llama.h"
#include "models/tensor_names.h"
#include "tests/file_util.h"

typedef struct { char name[160]; const char *dtype; int ndim; int64_t shape[2]; const void *data; size_t n; } st_entry;

// A safetensors file of these entries (header sorted as written; data in order).
static bool write_st(const char *path, const st_entry *e, int n) {
    json_t *h = json_object();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *t = json_object(), *sh = json_array();
        for (int d = 0; d < e[i].ndim; d++) json_array_append_new(sh, json_integer(e[i].shape[d]));
        json_object_set_new(t, "dtype", json_string(e[i].dtype));
        json_object_set_new(t, "shape", sh);
        json_object_set_new(t, "data_offsets", json_pack("[I, I]", (json_int_t)off, (json_int_t)(off + e[i].n)));
        json_object_set_new(h, e[i].name, t);
        off += e[i].n;
    }
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t hl = strlen(hs), pad = (8 - hl % 8) % 8;
    FILE *f = fopen(path, "wb");
    if (!f) { free(hs); return false; }
    uint64_t n8 = hl + pad;
    fwrite(&n8, 8, 1, f);
    fwrite(hs, 1, hl, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    for (int i = 0; i < n; i++) fwrite(e[i].data, 1, e[i].n, f);
    free(hs);
    return fclose(f) == 0;
}

// The bitsandbytes folder for m's weights (m loaded with NF4 double quantization: its linears hold
// exactly what bitsandbytes stores). skip: a companion suffix to leave out, or NULL.
static bool write_bnb(const dt_llama *m, const char *dir, const char *skip) {
    mkdir(dir, 0755);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    size_t n = 0;
    char *cfg = tf_slurp(GQA "/config.json", &n);
    json_t *c = json_loadb(cfg, n, 0, NULL);
    free(cfg);
    json_object_set_new(c, "quantization_config",
                        json_pack("{s:s, s:b, s:s, s:b, s:s}", "quant_method", "bitsandbytes", "load_in_4bit", 1,
                                  "bnb_4bit_quant_type", "nf4", "bnb_4bit_use_double_quant", 1, "bnb_4bit_compute_dtype", "float32"));
    json_dump_file(c, p, 0);
    json_decref(c);
    st_entry *e = calloc(512, sizeof *e);
    char **qs = calloc(64, sizeof *qs);
    int k = 0, nq = 0;
    const dt_tensor *plain[] = {&m->embed, &m->norm, &m->lm_head};
    const char *plain_names[] = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
    for (int i = 0; i < 3; i++)
        e[k++] = (st_entry){"", "F32", plain[i]->ndim, {plain[i]->shape[0], plain[i]->shape[1]}, plain[i]->data, dt_nbytes(plain[i])};
    for (int i = 0; i < 3; i++) snprintf(e[i].name, sizeof e[i].name, "%s", plain_names[i]);
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const dt_llama_layer *ly = &m->layers[l];
        e[k] = (st_entry){"", "F32", 1, {ly->attn_norm.shape[0], 1}, ly->attn_norm.data, dt_nbytes(&ly->attn_norm)};
        dt_tn_layer(e[k++].name, sizeof e[0].name, l, DT_LT_ATTN_NORM);
        e[k] = (st_entry){"", "F32", 1, {ly->ffn_norm.shape[0], 1}, ly->ffn_norm.data, dt_nbytes(&ly->ffn_norm)};
        dt_tn_layer(e[k++].name, sizeof e[0].name, l, DT_LT_FFN_NORM);
        for (int t = 0; t < DT_MOD_COUNT; t++) {
            const dt_tensor *w = &ly->w[t];
            const dt_nf4_state *st = w->aux;
            const int64_t numel = dt_numel(w), nb = (numel + 63) / 64, n2 = (nb + 255) / 256;
            char base[96];
            dt_tn_layer(base, sizeof base, l, (dt_layer_tensor)t);
            e[k] = (st_entry){"", "U8", 2, {numel / 2, 1}, w->data, (size_t)numel / 2};
            snprintf(e[k++].name, sizeof e[0].name, "%s", base);
            const struct { const char *suf, *dt; int64_t n; const void *d; size_t bytes; } comp[] = {
                {".absmax", "U8", nb, st->qabsmax, (size_t)nb},
                {".quant_map", "F32", 16, st->code, 64},
                {".nested_absmax", "F32", n2, st->nested_absmax, (size_t)n2 * 4},
                {".nested_quant_map", "F32", 256, st->nested_code, 1024},
            };
            for (int q = 0; q < 4; q++) {
                if (skip && !strcmp(skip, comp[q].suf)) continue;
                e[k] = (st_entry){"", comp[q].dt, 1, {comp[q].n, 1}, comp[q].d, comp[q].bytes};
                snprintf(e[k++].name, sizeof e[0].name, "%s%s", base, comp[q].suf);
            }
            char js[512];
            snprintf(js, sizeof js, "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [%lld, %lld], "
                     "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": %.9g}",
                     (long long)w->shape[0], (long long)w->shape[1], st->offset);
            qs[nq] = strdup(js);
            e[k] = (st_entry){"", "U8", 1, {(int64_t)strlen(js), 1}, qs[nq], strlen(js)};
            nq++;
            snprintf(e[k++].name, sizeof e[0].name, "%s.quant_state.bitsandbytes__nf4", base);
        }
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    bool ok = write_st(p, e, k);
    for (int i = 0; i < nq; i++) free(qs[i]);
    free(qs);
    free(e);
    return ok;
}

#endif

// llama2.c legacy checkpoint reader (format as written by llama2.c's export.py legacy_export and read by
// its run.c). The file is mapped read-only; every tensor but wq/wk is exposed in place, and wq/wk are
// copied with their rows permuted into the Hugging Face rotate-half RoPE layout.
#include "models/llama2c.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "models/tensor_names.h"

#define L2C_HEADER_BYTES 28          // 7 int32
#define L2C_V1_MAGIC 0x616b3432u     // "ak42": the newer llama2.c export versions, not read here

struct dt_llama2c {
    char *path;
    void *map;
    size_t size;
    dt_st_tensor *t;   // file order, grouped by layer
    size_t n;
    size_t *by_name;   // indices sorted by name
    float **owned;     // the permuted q/k copies
    size_t nowned;
};

typedef struct { int dim, hidden, layers, heads, kv_heads, vocab, seq_len; } l2c_header;

// Copies w (n_heads * head_dim, dim), rows ordered in adjacent pairs per head, into dst with each head's
// rows reordered as rotate-half expects: first the even rows (x of each pair), then the odd rows (y).
// This is transformers' convert_llama_weights_to_hf permute: view(h, hd/2, 2, dim).transpose(1, 2).
static void permute_rows(float *dst, const float *w, int n_heads, int head_dim, int dim) {
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < head_dim / 2; j++)
            for (int p = 0; p < 2; p++) {
                const float *src = w + ((size_t)h * head_dim + 2 * j + p) * dim;
                float *d = dst + ((size_t)h * head_dim + (size_t)p * (head_dim / 2) + j) * dim;
                memcpy(d, src, (size_t)dim * sizeof *d);
            }
}

static int cmp_name(const void *a, const void *b, void *arg) {
    const dt_llama2c *m = arg;
    return strcmp(m->t[*(const size_t *)a].name, m->t[*(const size_t *)b].name);
}

static int add(dt_ctx *ctx, dt_llama2c *m, const char *name, const float *data, int ndim, int64_t d0, int64_t d1) {
    dt_st_tensor *t = &m->t[m->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", m->path);
    m->n++;
    t->dtype = DT_F32;
    t->st_dtype = DT_ST_F32;
    t->ndim = ndim;
    for (int i = 0; i < DT_MAX_DIMS; i++) t->shape[i] = 1;
    t->shape[0] = d0;
    if (ndim > 1) t->shape[1] = d1;
    t->nbytes = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1) * sizeof(float);
    t->data = data;
    return DT_OK;
}

static int check_header(dt_ctx *ctx, const char *path, const l2c_header *h, size_t size, uint64_t *floats) {
    if (h->dim <= 0 || h->hidden <= 0 || h->layers <= 0 || h->heads <= 0 || h->kv_heads <= 0 || h->vocab == 0 ||
        h->vocab == -2147483647 - 1 || h->seq_len <= 0)
        return dt_fail(ctx, DT_EINPUT, "%s: not a llama2.c checkpoint: header dim=%d, hidden_dim=%d, n_layers=%d, "
                       "n_heads=%d, n_kv_heads=%d, vocab_size=%d, seq_len=%d has a non-positive size", path, h->dim,
                       h->hidden, h->layers, h->heads, h->kv_heads, h->vocab, h->seq_len);
    if (h->dim % h->heads || h->heads % h->kv_heads || (h->dim / h->heads) % 2)
        return dt_fail(ctx, DT_EINPUT, "%s: dim=%d, n_heads=%d, n_kv_heads=%d: heads must divide dim, kv heads must "
                       "divide heads and the head size must be even", path, h->dim, h->heads, h->kv_heads);
    // 128-bit arithmetic: with fields up to 2^31, L * dim * dim alone can reach 2^93, and a corrupt header
    // must not wrap around into a size that happens to match.
    typedef unsigned __int128 u128;
    u128 dim = (u128)h->dim, hid = (u128)h->hidden, L = (u128)h->layers;
    u128 vocab = (u128)(h->vocab < 0 ? -(int64_t)h->vocab : h->vocab);
    u128 kv = dim / (u128)h->heads * (u128)h->kv_heads, hs = dim / (u128)h->heads;
    u128 n = vocab * dim                      // token_embedding_table
             + L * dim * 2                    // rms_att, rms_ffn
             + L * dim * dim * 2              // wq, wo
             + L * dim * kv * 2               // wk, wv
             + L * dim * hid * 3              // w1, w2, w3
             + dim                            // rms_final
             + (u128)h->seq_len * hs          // freq_cis_real + freq_cis_imag, seq_len * head_size/2 each
             + (h->vocab < 0 ? vocab * dim : 0); // wcls when not shared
    u128 bytes = L2C_HEADER_BYTES + n * 4;
    if (bytes != size) {
        char want[48]; // a u128 in decimal
        int k = (int)sizeof want - 1;
        want[k] = 0;
        for (u128 b = bytes; k == (int)sizeof want - 1 || b; b /= 10) want[--k] = (char)('0' + (int)(b % 10));
        return dt_fail(ctx, DT_EINPUT, "%s: expected %s bytes for dim=%d, hidden_dim=%d, n_layers=%d, n_heads=%d, "
                       "n_kv_heads=%d, vocab_size=%d, seq_len=%d (%s classifier), got %zu", path, want + k, h->dim,
                       h->hidden, h->layers, h->heads, h->kv_heads, h->vocab, h->seq_len,
                       h->vocab < 0 ? "separate" : "shared", size);
    }
    *floats = (uint64_t)n; // equal to a real file size, so it fits
    return DT_OK;
}

static void fill_config(const l2c_header *h, dt_model_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = DT_ARCH_LLAMA;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", dt_arch_name(DT_ARCH_LLAMA));
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->hidden_size = h->dim;
    c->num_layers = h->layers;
    c->num_heads = h->heads;
    c->num_kv_heads = h->kv_heads;
    c->head_dim = h->dim / h->heads;
    c->intermediate_size = h->hidden;
    c->vocab_size = h->vocab < 0 ? -h->vocab : h->vocab;
    c->max_position_embeddings = h->seq_len;
    c->rms_norm_eps = 1e-5f;   // run.c's rmsnorm
    c->rope_theta = 10000.0f;  // run.c's RoPE base
    c->tie_word_embeddings = h->vocab > 0;
    // The llama2.c (sentencepiece) tokenizers use 1 and 2; a vocabulary too small for them has neither.
    c->bos_token_id = c->vocab_size > 2 ? 1 : -1;
    c->eos_token_id = c->vocab_size > 2 ? 2 : -1;
    c->torch_dtype = DT_F32;
}

static int load(dt_ctx *ctx, dt_llama2c *m, dt_model_config *cfg) {
    const char *path = m->path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dt_fail(ctx, errno == ENOENT || errno == EACCES || errno == ENOTDIR ? DT_EINPUT : DT_EIO,
                       "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return dt_fail(ctx, DT_EINPUT, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < L2C_HEADER_BYTES) {
        close(fd);
        return dt_fail(ctx, DT_EINPUT, "%s: %zu bytes is too short for a llama2.c checkpoint header", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return dt_fail(ctx, DT_EIO, "%s: mmap failed: %s", path, strerror(e));
    m->map = map;
    m->size = size;

    int32_t hv[7];
    memcpy(hv, map, sizeof hv);
    if ((uint32_t)hv[0] == L2C_V1_MAGIC)
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: a llama2.c version-%d export (magic \"ak42\"); only the legacy "
                       "format (export.py --version 0) is supported", path, hv[1]);
    l2c_header h = {hv[0], hv[1], hv[2], hv[3], hv[4], hv[5], hv[6]};
    uint64_t floats;
    int rc = check_header(ctx, path, &h, size, &floats);
    if (rc) return rc;
    fill_config(&h, cfg);
    if ((rc = dt_config_validate(ctx, cfg, path))) return rc;

    const int64_t dim = h.dim, hid = h.hidden, L = h.layers, hs = dim / h.heads, kv = hs * h.kv_heads,
                  vocab = cfg->vocab_size;
    const float *p = (const float *)((const char *)map + L2C_HEADER_BYTES); // 4-aligned: page + 28
    const float *emb = p;              p += vocab * dim;   // (vocab, dim)
    const float *rms_att = p;          p += L * dim;       // (L, dim)
    const float *wq = p;               p += L * dim * dim; // (L, dim, dim)
    const float *wk = p;               p += L * kv * dim;  // (L, kv_dim, dim)
    const float *wv = p;               p += L * kv * dim;  // (L, kv_dim, dim)
    const float *wo = p;               p += L * dim * dim; // (L, dim, dim)
    const float *rms_ffn = p;          p += L * dim;       // (L, dim)
    const float *w1 = p;               p += L * hid * dim; // (L, hidden, dim)
    const float *w2 = p;               p += L * dim * hid; // (L, dim, hidden)
    const float *w3 = p;               p += L * hid * dim; // (L, hidden, dim)
    const float *rms_final = p;        p += dim;           // (dim,)
    p += (int64_t)h.seq_len * hs;                          // freq_cis_real, freq_cis_imag: unused
    const float *wcls = h.vocab < 0 ? p : NULL;            // (vocab, dim)

    size_t cap = 3 + (size_t)L * 9;
    m->t = calloc(cap, sizeof *m->t);
    m->owned = calloc((size_t)L * 2, sizeof *m->owned);
    if (!m->t || !m->owned) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    char name[256];
    if ((rc = add(ctx, m, dt_tn_global(DT_GT_EMBED), emb, 2, vocab, dim))) return rc;
    for (int64_t l = 0; l < L; l++) {
        float *q = malloc((size_t)(dim * dim) * sizeof *q), *k = malloc((size_t)(kv * dim) * sizeof *k);
        m->owned[m->nowned++] = q;
        m->owned[m->nowned++] = k;
        if (!q || !k) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
        permute_rows(q, wq + l * dim * dim, h.heads, (int)hs, (int)dim);
        permute_rows(k, wk + l * kv * dim, h.kv_heads, (int)hs, (int)dim);
        const struct { dt_layer_tensor t; const float *d; int ndim; int64_t d0, d1; } per[] = {
            {DT_LT_ATTN_NORM, rms_att + l * dim, 1, dim, 1},
            {DT_LT_Q, q, 2, dim, dim},
            {DT_LT_K, k, 2, kv, dim},
            {DT_LT_V, wv + l * kv * dim, 2, kv, dim},
            {DT_LT_O, wo + l * dim * dim, 2, dim, dim},
            {DT_LT_FFN_NORM, rms_ffn + l * dim, 1, dim, 1},
            {DT_LT_GATE, w1 + l * hid * dim, 2, hid, dim},
            {DT_LT_DOWN, w2 + l * dim * hid, 2, dim, hid},
            {DT_LT_UP, w3 + l * hid * dim, 2, hid, dim},
        };
        for (size_t i = 0; i < sizeof per / sizeof per[0]; i++) {
            dt_tn_layer(name, sizeof name, (int)l, per[i].t);
            if ((rc = add(ctx, m, name, per[i].d, per[i].ndim, per[i].d0, per[i].d1))) return rc;
        }
    }
    if ((rc = add(ctx, m, dt_tn_global(DT_GT_NORM), rms_final, 1, dim, 1))) return rc;
    if (wcls && (rc = add(ctx, m, dt_tn_global(DT_GT_LM_HEAD), wcls, 2, vocab, dim))) return rc;

    m->by_name = malloc(m->n * sizeof *m->by_name);
    if (!m->by_name) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < m->n; i++) m->by_name[i] = i;
    qsort_r(m->by_name, m->n, sizeof *m->by_name, cmp_name, m);
    return DT_OK;
}

int dt_llama2c_load(dt_ctx *ctx, const char *path, dt_model_config *cfg, dt_llama2c **out) {
    *out = NULL;
    dt_llama2c *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    int rc = load(ctx, m, cfg);
    if (rc) {
        dt_llama2c_free(m);
        return rc;
    }
    *out = m;
    return DT_OK;
}

void dt_llama2c_free(dt_llama2c *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) free(m->t[i].name);
    for (size_t i = 0; i < m->nowned; i++) free(m->owned[i]);
    if (m->map) munmap(m->map, m->size);
    free(m->owned);
    free(m->by_name);
    free(m->t);
    free(m->path);
    free(m);
}

size_t dt_llama2c_count(const dt_llama2c *m) { return m->n; }
const dt_st_tensor *dt_llama2c_at(const dt_llama2c *m, size_t i) { return i < m->n ? &m->t[i] : NULL; }

const dt_st_tensor *dt_llama2c_find(const dt_llama2c *m, const char *name) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->t[m->by_name[mid]].name, name);
        if (!c) return &m->t[m->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int dt_llama2c_read_f32(dt_ctx *ctx, const dt_llama2c *m, const char *name, float *dst, int ndim,
                        const int64_t *expect_shape) {
    const dt_st_tensor *t = dt_llama2c_find(m, name);
    if (!t) return dt_fail(ctx, DT_EINPUT, "%s: tensor '%s' not found", m->path, name);
    int rc = expect_shape ? dt_st_check_shape(ctx, m->path, t, ndim, expect_shape) : DT_OK;
    if (!rc) memcpy(dst, t->data, t->nbytes);
    return rc;
}

// Merging LoRA adapters into the base weights, tensor by tensor, through the writers' fill callbacks:
// each output tensor is produced (read, folded, permuted, cast) only when the writer asks for its bytes.
#include "peft/merge.h"
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "models/atomic_file.h"
#include "models/gguf.h"
#include "models/gguf_tokenizer.h"
#include "models/gguf_write.h"
#include "models/safetensors_write.h"
#include "models/weights.h"
#include "peft/export_gguf.h"
#include "peft/peft_io.h"

int dt_adapter_load_cfg(dt_ctx *ctx, const char *dir, const dt_model_config *cfg, dt_adapter **out) {
    // dt_adapter_load reads only m->cfg for LoRA (and for the shape of prompt embeddings, whose values
    // come from the file), so a model without weights stands in for the base.
    dt_llama stub;
    memset(&stub, 0, sizeof stub);
    stub.cfg = *cfg;
    return dt_adapter_load(ctx, dir, &stub, out);
}

const dt_lora_ref *dt_adapter_lora_at(const dt_adapter *a, int layer, int module) {
    if (a->method != DT_PEFT_LORA || !a->ref_ptrs || module < 0 || module >= DT_MOD_COUNT) return NULL;
    return a->ref_ptrs[(size_t)layer * DT_MOD_COUNT + (size_t)module];
}

void dt_lora_fold(float *W, const float *A, const float *B, int64_t out, int64_t in, int64_t r, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)in, (int)r, scale, B, (int)r, A, (int)in,
                1.0f, W, (int)in);
}

#define MAX_THREADS 32

// ---- the source model and the adapters ---------------------------------------------------------------

typedef struct merger {
    dt_ctx *ctx;
    const dt_merge_opts *o;
    dt_model_config cfg;
    dt_weights *w;        // the model (its config; the tensors of a llama2.c file)
    dt_safetensors *st;   // a Hugging Face model's shards, NULL for llama2.c
    dt_adapter **ad;      // (n_adapters)
    const char *arch;     // gguf: llama.cpp's architecture name
    float *scratch;       // (threads + 1, 2, row_cols) f32 row buffers: the row loop's and the prefetcher's
    size_t row_cols;      // the widest row of a folded or permuted tensor
    struct prefetch *pf;  // computing ahead of the writer, or NULL
    void *obuf;           // gguf: one tensor in its output dtype
    size_t obuf_n;
} merger;

static size_t src_count(const merger *m) { return m->st ? dt_st_count(m->st) : dt_weights_count(m->w); }
static const dt_st_tensor *src_at(const merger *m, size_t i) { return m->st ? dt_st_at(m->st, i) : dt_weights_at(m->w, i); }
static const dt_st_tensor *src_find(const merger *m, const char *n) { return m->st ? dt_st_find(m->st, n) : dt_weights_find(m->w, n); }
static const char *src_file(const merger *m, const dt_st_tensor *t) {
    return m->st ? dt_st_shard_path(m->st, t->shard) : dt_weights_path(m->w);
}

static int expect(merger *m, const char *name, int ndim, int64_t d0, int64_t d1, bool required) {
    const dt_st_tensor *t = src_find(m, name);
    if (!t) return required ? dt_fail(m->ctx, DT_EINPUT, "%s: tensor '%s' is missing (the config says the model has it)", m->o->model, name) : DT_OK;
    const int64_t shape[2] = {d0, d1};
    return dt_st_check_shape(m->ctx, src_file(m, t), t, ndim, shape);
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
    for (size_t i = 0; i < src_count(m) && !rc; i++) {
        const dt_st_tensor *t = src_at(m, i);
        int layer;
        dt_layer_tensor lt;
        if (!dt_tn_parse_layer(t->name, &layer, &lt) && layer >= c->num_layers)
            rc = dt_fail(m->ctx, DT_EINPUT, "%s: tensor '%s' belongs to layer %d, but the config has %d layers",
                         src_file(m, t), t->name, layer, c->num_layers);
    }
    return rc;
}

static int load_adapters(merger *m) {
    const dt_merge_opts *o = m->o;
    if (o->n_adapters && !(m->ad = calloc((size_t)o->n_adapters, sizeof *m->ad))) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
    for (int i = 0; i < o->n_adapters; i++) {
        int rc = dt_adapter_load_cfg(m->ctx, o->adapters[i].dir, &m->cfg, &m->ad[i]);
        if (rc) return rc;
        if (m->ad[i]->method != DT_PEFT_LORA)
            return dt_fail(m->ctx, DT_EINPUT, "%s: a prompt-tuning adapter cannot be merged into weights (only LoRA adapters can)", o->adapters[i].dir);
    }
    return DT_OK;
}

// ---- producing one output tensor ------------------------------------------------------------------

typedef struct tjob {
    merger *m;
    const dt_st_tensor *src; // NULL for rope_freqs.weight (computed)
    char name[96];           // output name
    int layer, lt;           // the HF layer tensor, or lt = -1
    int heads;               // permute q/k rows over this many heads; 0: no permutation
    dt_dtype out;
    int ndim;
    int64_t shape[DT_MAX_DIMS];
} tjob;

static bool folds(const merger *m, int layer, int lt) {
    for (int i = 0; i < m->o->n_adapters && lt >= 0; i++)
        if (dt_adapter_lora_at(m->ad[i], layer, lt)) return true;
    return false;
}

// Drops the pages of a memory-mapped safetensors tensor once used, so the resident size stays near one
// tensor rather than growing to the whole model; a later read would simply fault them in again. Only
// whole pages inside the tensor, and only for the read-only file mapping (llama2.c tensors may be heap).
static void release(const merger *m, const dt_st_tensor *t) {
    if (!m->st || !t->nbytes) return;
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)t->data;
    uintptr_t start = (a + pg - 1) / pg * pg, end = (a + t->nbytes) / pg * pg;
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
}

// row (cols) += sum over the adapters of weight * scale * B[src_row, :] @ A: one row of W + s B A, with the
// row in L1 and A in L2. Four of A's rows per pass over the output row, as fused multiply-adds.
static void fold_row(const merger *m, const tjob *j, int64_t src_row, int64_t cols, float *restrict row) {
    for (int i = 0; i < m->o->n_adapters; i++) {
        const dt_lora_ref *r = dt_adapter_lora_at(m->ad[i], j->layer, j->lt);
        if (!r) continue;
        const int64_t rk = r->A->shape[0];
        const float s = r->scale * m->o->adapters[i].weight;
        const float *A = dt_f32(r->A), *B = dt_f32(r->B) + src_row * rk; // A (rk, cols), B row (rk)
        int64_t k = 0;
        for (; k + 4 <= rk; k += 4) {
            const float c0 = s * B[k], c1 = s * B[k + 1], c2 = s * B[k + 2], c3 = s * B[k + 3];
            const float *restrict a0 = A + k * cols, *restrict a1 = a0 + cols, *restrict a2 = a1 + cols, *restrict a3 = a2 + cols;
            #pragma omp simd
            for (int64_t x = 0; x < cols; x++) row[x] = fmaf(c3, a3[x], fmaf(c2, a2[x], fmaf(c1, a1[x], fmaf(c0, a0[x], row[x]))));
        }
        for (; k < rk; k++) {
            const float c = s * B[k];
            const float *restrict a = A + k * cols;
            #pragma omp simd
            for (int64_t x = 0; x < cols; x++) row[x] = fmaf(c, a[x], row[x]);
        }
    }
}

// Row conversions of the hot loop, vectorised (dt_convert_* are not, at -O2) for bf16 with
// dt_f32_to_bf16's rounding (round to nearest even, NaN kept quiet; test_merge compares the two); other
// dtypes go through dt_convert_*.
static void row_to_f32(float *restrict dst, const void *restrict src, dt_dtype t, int64_t n) {
    if (t != DT_BF16) { dt_convert_to_f32(dst, src, t, (size_t)n); return; }
    const uint16_t *restrict s = src;
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)s[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

static void row_from_f32(void *restrict dst, dt_dtype t, const float *restrict src, int64_t n) {
    if (t != DT_BF16) { dt_convert_from_f32(dst, t, src, (size_t)n); return; }
    uint16_t *restrict d = dst;
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1)) >> 16;
        d[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40 : rounded);
    }
}

// One thread's share of a folded or permuted tensor: output rows [r0, r1), each read from its source row
// (the q/k permutation picks it), widened to f32, folded and narrowed into dst.
typedef struct rows_task {
    tjob *j;
    void *dst;
    int64_t r0, r1;
    float *buf; // (cols) f32, plus (cols) staging for an unaligned source row
} rows_task;

static void *run_rows(void *arg) {
    rows_task *task = arg;
    const tjob *j = task->j;
    const dt_st_tensor *t = j->src;
    const int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    const size_t in_row = (size_t)cols * dt_dtype_size(t->dtype), out_row = (size_t)cols * dt_dtype_size(j->out);
    const bool aligned = dt_st_aligned(t), fold = folds(j->m, j->layer, j->lt);
    float *row = task->buf, *stage = task->buf + cols;
    for (int64_t r = task->r0; r < task->r1; r++) {
        const int64_t sr = j->heads ? dt_gguf_qk_source_row(r, rows, j->heads) : r;
        const void *src = (const char *)t->data + (size_t)sr * in_row;
        if (!aligned) src = memcpy(stage, src, in_row);
        row_to_f32(row, src, t->dtype, cols);
        if (fold) fold_row(j->m, j, sr, cols, row);
        row_from_f32((char *)task->dst + (size_t)r * out_row, j->out, row, cols);
    }
    return NULL;
}

// Threads for the row loop: plain pthreads rather than OpenMP, whose idle workers spin between parallel
// regions and would take the second core from the kernel's writing of the output (measured: 4x slower).
static int threads_for(const merger *m) {
    int n = m->ctx->nthreads > 0 ? m->ctx->nthreads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

static size_t job_bytes(const tjob *j) {
    size_t n = dt_dtype_size(j->out);
    for (int d = 0; d < j->ndim; d++) n *= (size_t)j->shape[d];
    return n;
}

// Writes job j's bytes into dst, splitting the rows of a folded or permuted tensor over nt threads that use
// the row buffers at bufs (2 rows each).
static int produce_with(tjob *j, void *dst, int nt, float *bufs) {
    merger *m = j->m;
    if (!j->src) {
        dt_gguf_rope_factors(&m->cfg, dst);
        return DT_OK;
    }
    const dt_st_tensor *t = j->src;
    int rc = DT_OK;
    if (!j->heads && !folds(m, j->layer, j->lt)) {
        rc = dt_st_tensor_copy(m->ctx, src_file(m, t), t, j->out, dst);
    } else {
        const int64_t rows = t->shape[0];
        if (rows < 64 * nt) nt = 1; // tiny tensors: a thread costs more than it saves
        rows_task tasks[MAX_THREADS];
        pthread_t tid[MAX_THREADS];
        bool started[MAX_THREADS] = {false};
        for (int i = 0; i < nt; i++) {
            tasks[i] = (rows_task){j, dst, rows * i / nt, rows * (i + 1) / nt, bufs + (size_t)i * 2 * m->row_cols};
            if (i > 0) started[i] = !pthread_create(&tid[i], NULL, run_rows, &tasks[i]);
        }
        run_rows(&tasks[0]);
        for (int i = 1; i < nt; i++) {
            if (started[i]) pthread_join(tid[i], NULL);
            else run_rows(&tasks[i]); // no thread could be started: do its share here
        }
    }
    release(m, t);
    return rc;
}

static int produce(tjob *j, void *dst) { return produce_with(j, dst, threads_for(j->m), j->m->scratch); }

// ---- computing ahead -----------------------------------------------------------------------------------
// The writers ask for one tensor, then write it, then ask for the next. A second thread computes the
// folded/permuted tensors ahead into a ring of slots, in the order the writer will ask for them, while the
// writer's thread copies finished tensors into the file; when that thread gets ahead and waits for a
// tensor, it computes rows of it too (rows are handed out in chunks). If the writer asks for something else
// than predicted, the prefetcher is stopped and everything is computed on demand (always correct).

enum { NSLOT = 4, CHUNK_ROWS = 32 };

typedef struct slot {
    tjob *job;               // NULL: free
    void *buf;               // the job's bytes, sized for the largest compute job
    int64_t next_row, rows_left;
} slot;

typedef struct prefetch {
    merger *m;
    tjob **order;            // (n) the compute jobs in the writer's order
    size_t n, next;          // next: the index fill expects
    slot slots[NSLOT];       // job i goes to slot i % NSLOT
    bool stop, started;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} prefetch;

static bool is_compute(const tjob *j) { return j->src && (j->heads || folds(j->m, j->layer, j->lt)); }

// Computes chunks of job j's rows in slot s until none is left to hand out; bufs: this thread's row
// buffers. The slot may have been finished, written and handed to a later job meanwhile: then nothing is
// left to do here.
static void work_on(prefetch *p, slot *s, tjob *j, float *bufs) {
    const int64_t rows = j->src->shape[0];
    for (;;) {
        pthread_mutex_lock(&p->mu);
        const bool mine = s->job == j && s->next_row < rows;
        const int64_t r0 = s->next_row, r1 = r0 + CHUNK_ROWS < rows ? r0 + CHUNK_ROWS : rows;
        if (mine) s->next_row = r1;
        pthread_mutex_unlock(&p->mu);
        if (!mine) return;
        rows_task t = {j, s->buf, r0, r1, bufs};
        run_rows(&t);
        pthread_mutex_lock(&p->mu);
        s->rows_left -= r1 - r0;
        const bool finished = s->rows_left == 0;
        if (finished) pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (finished) release(p->m, j->src);
    }
}

static void *prefetch_run(void *arg) {
    prefetch *p = arg;
    float *bufs = p->m->scratch + (size_t)threads_for(p->m) * 2 * p->m->row_cols; // this thread's row buffers
    for (size_t i = 0; i < p->n; i++) {
        slot *s = &p->slots[i % NSLOT];
        pthread_mutex_lock(&p->mu);
        while (!p->stop && s->job) pthread_cond_wait(&p->cv, &p->mu);
        const bool stop = p->stop;
        if (!stop) {
            s->job = p->order[i];
            s->next_row = 0;
            s->rows_left = p->order[i]->src->shape[0];
            pthread_cond_broadcast(&p->cv);
        }
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        work_on(p, s, p->order[i], bufs);
    }
    return NULL;
}

static void prefetch_stop(prefetch *p) {
    if (!p->started) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    p->started = false;
}

static void prefetch_free(prefetch *p) {
    prefetch_stop(p);
    for (int s = 0; s < NSLOT; s++) free(p->slots[s].buf);
    free(p->order);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

// Starts computing jobs[order[i]] ahead (order: indices into jobs, the writer's order). Without a second
// thread or memory for the slots it stays off, and every tensor is produced on demand.
static void prefetch_start(prefetch *p, merger *m, tjob *jobs, const size_t *order, size_t n) {
    memset(p, 0, sizeof *p);
    p->m = m;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    size_t biggest = 0;
    if (!(p->order = malloc((n ? n : 1) * sizeof *p->order))) return;
    for (size_t i = 0; i < n; i++)
        if (is_compute(&jobs[order[i]])) {
            p->order[p->n++] = &jobs[order[i]];
            if (job_bytes(&jobs[order[i]]) > biggest) biggest = job_bytes(&jobs[order[i]]);
        }
    for (int s = 0; s < NSLOT; s++)
        if (!(p->slots[s].buf = malloc(biggest ? biggest : 1))) return;
    p->started = p->n > 0 && !pthread_create(&p->thread, NULL, prefetch_run, p);
}

// Job j's bytes: the prefetched slot when j is the one predicted (returned in *out, valid until the next
// call), else produced into dst.
static int fetch(prefetch *p, tjob *j, void *dst, const void **out) {
    *out = dst;
    if (p && p->started && is_compute(j)) {
        if (p->next < p->n && p->order[p->next] == j) {
            slot *s = &p->slots[p->next % NSLOT];
            float *bufs = p->m->scratch; // the row buffers of the (idle) row-loop threads
            pthread_mutex_lock(&p->mu);
            if (p->next > 0) { // the previous tensor has been written out: its slot is free
                p->slots[(p->next - 1) % NSLOT].job = NULL;
                pthread_cond_broadcast(&p->cv);
            }
            while (s->job != j || s->rows_left > 0) {
                if (s->job == j && s->next_row < j->src->shape[0]) { // help with its rows
                    pthread_mutex_unlock(&p->mu);
                    work_on(p, s, j, bufs);
                    pthread_mutex_lock(&p->mu);
                } else {
                    pthread_cond_wait(&p->cv, &p->mu);
                }
            }
            pthread_mutex_unlock(&p->mu);
            p->next++;
            *out = s->buf;
            return DT_OK;
        }
        prefetch_stop(p); // not the predicted order: compute on demand from here on
    }
    return produce(j, dst);
}

// Fills a job for source tensor t (output name and dtype set by the caller) and grows the scratch need.
static void job_init(merger *m, tjob *j, const dt_st_tensor *t) {
    memset(j, 0, sizeof *j);
    j->m = m;
    j->src = t;
    j->lt = -1;
    j->ndim = t->ndim;
    memcpy(j->shape, t->shape, sizeof j->shape);
    snprintf(j->name, sizeof j->name, "%s", t->name);
    dt_layer_tensor lt;
    if (!dt_tn_parse_layer(t->name, &j->layer, &lt)) j->lt = (int)lt;
}

// Row buffers for the widest folded or permuted tensor: 2 rows of f32 for each row-loop thread and for
// the prefetcher.
static int alloc_scratch(merger *m, const tjob *jobs, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (is_compute(&jobs[i])) {
            size_t c = jobs[i].ndim == 2 ? (size_t)jobs[i].shape[1] : 1;
            if (c > m->row_cols) m->row_cols = c;
        }
    const size_t need = m->row_cols * 2 * (size_t)(threads_for(m) + 1);
    if (need && !(m->scratch = malloc(need * sizeof(float))))
        return dt_fail(m->ctx, DT_ENOMEM, "out of memory for %zu row buffers", need);
    return DT_OK;
}

// ---- Hugging Face output --------------------------------------------------------------------------

static int st_fill(dt_ctx *ctx, void *user, void *dst, size_t nbytes) {
    (void)ctx;
    tjob *j = user;
    const void *src;
    int rc = fetch(j->m->pf, j, dst, &src);
    if (!rc && src != dst) memcpy(dst, src, nbytes);
    return rc;
}

// The safetensors writer's layout order (see safetensors_write.h): dtypes F32, I32, BF16, F16, then names.
static int layout_rank(dt_dtype t) { return t == DT_F32 ? 3 : t == DT_I32 ? 2 : t == DT_BF16 ? 1 : 0; }
static int cmp_layout(const void *a, const void *b, void *jobs) {
    const tjob *x = (const tjob *)jobs + *(const size_t *)a, *y = (const tjob *)jobs + *(const size_t *)b;
    int rx = layout_rank(x->out), ry = layout_rank(y->out);
    return rx != ry ? ry - rx : strcmp(x->name, y->name);
}

static const char *torch_dtype_name(dt_dtype t) {
    return t == DT_BF16 ? "bfloat16" : t == DT_F16 ? "float16" : "float32";
}

// The last component of a path, without trailing slashes, into buf.
static void base_name(const char *path, char *buf, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(buf, n, "%.*s", (int)(len - start), path + start);
}

static int read_file(dt_ctx *ctx, const char *path, char **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(ctx, DT_EINPUT, "%s: cannot read the file: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            char *p = realloc(buf, cap = (len + 65536 + 1) * 2);
            if (!p) { free(buf); fclose(f); return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path); }
            buf = p;
        }
        size_t got = fread(buf + len, 1, 65536, f);
        len += got;
        if (got < 65536) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return dt_fail(ctx, DT_EIO, "%s: read failed", path); }
    buf[len] = '\0';
    *out = buf;
    *n = len;
    return DT_OK;
}

// config.json with every "torch_dtype"/"dtype" string value replaced by `value` (or "torch_dtype" added
// at the top when there is none), edited as text so that everything else stays byte for byte.
static char *set_config_dtype(const char *text, const char *value) {
    size_t n = strlen(text), cap = n + 64;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = 0;
    bool found = false;
    for (size_t i = 0; i < n;) {
        const char *keys[] = {"\"torch_dtype\"", "\"dtype\""};
        size_t klen = 0;
        for (int k = 0; k < 2 && !klen; k++)
            if (!strncmp(text + i, keys[k], strlen(keys[k]))) klen = strlen(keys[k]);
        size_t p = i + klen;
        if (klen) {
            while (p < n && strchr(" \t\r\n", text[p])) p++;
            if (p < n && text[p] == ':') {
                p++;
                while (p < n && strchr(" \t\r\n", text[p])) p++;
            } else klen = 0;
        }
        const char *close = klen && p < n && text[p] == '"' ? strchr(text + p + 1, '"') : NULL;
        if (close) {
            size_t need = o + (p + 1 - i) + strlen(value) + 1 + (n - (size_t)(close + 1 - text)) + 1;
            if (need > cap) {
                char *q = realloc(out, cap = need + 64);
                if (!q) { free(out); return NULL; }
                out = q;
            }
            memcpy(out + o, text + i, p + 1 - i); // key, colon, opening quote
            o += p + 1 - i;
            memcpy(out + o, value, strlen(value));
            o += strlen(value);
            out[o++] = '"';
            i = (size_t)(close + 1 - text);
            found = true;
        } else {
            if (o + 2 > cap) {
                char *q = realloc(out, cap = cap * 2);
                if (!q) { free(out); return NULL; }
                out = q;
            }
            out[o++] = text[i++];
        }
    }
    out[o] = '\0';
    if (found) return out;
    const char *brace = strchr(out, '{');
    if (!brace) { free(out); return NULL; }
    size_t at = (size_t)(brace + 1 - out);
    char *r = malloc(o + strlen(value) + 32);
    if (r) sprintf(r, "%.*s\n  \"torch_dtype\": \"%s\",%s", (int)at, out, value, out + at);
    free(out);
    return r;
}

static int write_config(merger *m, const char *tmp) {
    dt_ctx *ctx = m->ctx;
    char dst[4096], srcp[4096];
    snprintf(dst, sizeof dst, "%s/config.json", tmp);
    if (!m->st) { // llama2.c: the config comes from its header
        dt_model_config c = m->cfg;
        c.torch_dtype = m->o->dtype >= 0 ? (dt_dtype)m->o->dtype : DT_F32;
        return dt_config_save(ctx, &c, dst);
    }
    snprintf(srcp, sizeof srcp, "%s/config.json", m->o->model);
    char *text;
    size_t n;
    int rc = read_file(ctx, srcp, &text, &n);
    if (rc) return rc;
    if (m->o->dtype >= 0) {
        char *edited = set_config_dtype(text, torch_dtype_name((dt_dtype)m->o->dtype));
        free(text);
        if (!edited) return dt_fail(ctx, DT_EINPUT, "%s: cannot set torch_dtype (not a JSON object?)", srcp);
        text = edited;
        n = strlen(text);
    }
    rc = dt_atomic_write(ctx, dst, text, n);
    free(text);
    return rc;
}

// Files a Hugging Face folder carries besides the weights, copied as they are when present.
static const char *const COPIED[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                     "special_tokens_map.json", "tokenizer.model", "chat_template.jinja"};

static int copy_extras(merger *m, const char *tmp) {
    for (size_t i = 0; i < sizeof COPIED / sizeof COPIED[0]; i++) {
        char src[4096], dst[4096];
        snprintf(src, sizeof src, "%s/%s", m->o->model, COPIED[i]);
        if (access(src, F_OK)) continue;
        snprintf(dst, sizeof dst, "%s/%s", tmp, COPIED[i]);
        char *data;
        size_t n;
        int rc = read_file(m->ctx, src, &data, &n);
        if (!rc) rc = dt_atomic_write(m->ctx, dst, data, n);
        if (!rc) free(data);
        if (rc) return rc;
    }
    return DT_OK;
}

// The input's index with total_size updated to the output's bytes (the weight map is unchanged).
static int write_index(merger *m, const char *tmp, uint64_t total) {
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/model.safetensors.index.json", m->o->model);
    snprintf(dst, sizeof dst, "%s/model.safetensors.index.json", tmp);
    json_error_t err;
    json_t *idx = json_load_file(src, 0, &err);
    if (!idx) return dt_fail(m->ctx, DT_EINPUT, "%s:%d:%d: %s", src, err.line, err.column, err.text);
    json_t *meta = json_object_get(idx, "metadata");
    if (!json_is_object(meta)) json_object_set_new(idx, "metadata", meta = json_object());
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    // As transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
    char *text = json_dumps(idx, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(idx);
    if (!text) return dt_fail(m->ctx, DT_ENOMEM, "out of memory");
    size_t len = strlen(text);
    char *t2 = realloc(text, len + 2);
    if (!t2) { free(text); return dt_fail(m->ctx, DT_ENOMEM, "out of memory"); }
    t2[len] = '\n';
    int rc = dt_atomic_write(m->ctx, dst, t2, len + 1);
    free(t2);
    return rc;
}

// Writes the shard files into tmp: for each input shard, its tensors under the same name.
static int write_shards(merger *m, const char *tmp, uint64_t *total) {
    dt_ctx *ctx = m->ctx;
    const size_t n = src_count(m);
    tjob *jobs = calloc(n ? n : 1, sizeof *jobs);
    if (!jobs) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    int rc = DT_OK;
    *total = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const dt_st_tensor *t = src_at(m, i);
        job_init(m, &jobs[i], t);
        if (t->st_dtype == DT_ST_I64)
            rc = dt_fail(ctx, DT_EUNSUPPORTED, "%s: tensor '%s': I64 tensors cannot be written", src_file(m, t), t->name);
        jobs[i].out = t->dtype == DT_I32 || m->o->dtype < 0 ? t->dtype : (dt_dtype)m->o->dtype;
        *total += job_bytes(&jobs[i]);
    }
    if (!rc) rc = alloc_scratch(m, jobs, n);
    const int n_shards = m->st ? dt_st_shard_count(m->st) : 1;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order && !rc) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    for (int s = 0; s < n_shards && !rc; s++) {
        dt_st_writer *w;
        if ((rc = dt_st_writer_init(ctx, &w))) break;
        rc = dt_st_writer_set_metadata(ctx, w, "format", "pt");
        size_t k = 0;
        for (size_t i = 0; i < n && !rc; i++) {
            const dt_st_tensor *t = jobs[i].src;
            if (m->st && t->shard != s) continue;
            order[k++] = i;
            rc = t->dtype == DT_I32 ? dt_st_writer_add(ctx, w, t->name, DT_I32, t->ndim, t->shape, t->data)
                                    : dt_st_writer_add_fn(ctx, w, t->name, jobs[i].out, t->ndim, t->shape, st_fill, &jobs[i]);
        }
        char name[512], path[4096];
        if (m->st) base_name(dt_st_shard_path(m->st, s), name, sizeof name);
        else snprintf(name, sizeof name, "model.safetensors");
        snprintf(path, sizeof path, "%s/%s", tmp, name);
        if (!rc) {
            prefetch pf;
            qsort_r(order, k, sizeof *order, cmp_layout, jobs);
            prefetch_start(&pf, m, jobs, order, k);
            m->pf = &pf;
            rc = dt_st_writer_write(ctx, w, path);
            m->pf = NULL;
            prefetch_free(&pf);
        }
        dt_st_writer_free(w);
    }
    free(order);
    free(jobs);
    return rc;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(dir);
}

static int fsync_dir(dt_ctx *ctx, const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return dt_fail(ctx, DT_EIO, "%s: cannot open the folder: %s", dir, strerror(errno));
    int rc = fsync(fd) && errno != EINVAL ? dt_fail(ctx, DT_EIO, "%s: fsync failed: %s", dir, strerror(errno)) : DT_OK;
    close(fd);
    return rc;
}

static int merge_hf(merger *m) {
    dt_ctx *ctx = m->ctx;
    const char *out = m->o->out;
    if (!access(out, F_OK)) return dt_fail(ctx, DT_EINPUT, "%s: already exists; choose a new output folder", out);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    char *tmp = malloc(n + sizeof ".tmp.XXXXXX");
    if (!tmp) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    memcpy(tmp, out, n);
    memcpy(tmp + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    if (!mkdtemp(tmp)) {
        int e = errno;
        free(tmp);
        return dt_fail(ctx, e == ENOENT || e == ENOTDIR || e == EACCES ? DT_EINPUT : DT_EIO,
                       "%s: cannot create a temporary folder beside it: %s", out, strerror(e));
    }
    chmod(tmp, 0755); // mkdtemp makes it 0700; the output is meant to be shared like any model folder
    uint64_t total = 0;
    int rc = write_shards(m, tmp, &total);
    char idx[4096];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", m->o->model);
    if (!rc && m->st && !access(idx, F_OK)) rc = write_index(m, tmp, total);
    if (!rc) rc = write_config(m, tmp);
    if (!rc && m->st) rc = copy_extras(m, tmp);
    if (!rc) rc = fsync_dir(ctx, tmp);
    if (!rc && rename(tmp, out))
        rc = dt_fail(ctx, errno == EEXIST || errno == ENOTEMPTY ? DT_EINPUT : DT_EIO, "%s: cannot rename the finished folder into place: %s", out, strerror(errno));
    if (rc) remove_tree(tmp);
    else {
        // The rename itself becomes durable with the parent folder's fsync.
        char *parent = strdup(out), *slash = parent ? strrchr(parent, '/') : NULL;
        if (parent) {
            if (slash && slash != parent) *slash = '\0';
            else if (slash) slash[1] = '\0';
            rc = fsync_dir(ctx, slash ? parent : ".");
            free(parent);
        }
    }
    free(tmp);
    return rc;
}

// ---- GGUF output ------------------------------------------------------------------------------------

typedef struct gguf_plan {
    tjob *jobs;
    size_t n, next;
} gguf_plan;

static int gguf_fill(void *user, dt_ctx *ctx, dt_gguf_writer *w, const char *name, size_t nbytes) {
    gguf_plan *p = user;
    tjob *j = &p->jobs[p->next++];
    if (strcmp(name, j->name) || nbytes != job_bytes(j))
        return dt_fail(ctx, DT_EINTERNAL, "merge: the GGUF writer asks for '%s', expected '%s'", name, j->name);
    const void *src;
    int rc = fetch(j->m->pf, j, j->m->obuf, &src);
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
    job_init(m, j, t);
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
    add_job(m, p, src_find(m, dt_tn_global(DT_GT_EMBED)), dt_tn_global_gguf(DT_GT_EMBED), dtype);
    const bool perm = dt_gguf_permutes_qk(c);
    char hf[256], gg[96];
    for (int l = 0; l < c->num_layers; l++)
        for (size_t k = 0; k < per_layer; k++) {
            const dt_layer_tensor lt = GGUF_LAYER_ORDER[k];
            dt_tn_layer(hf, sizeof hf, l, lt);
            const dt_st_tensor *t = src_find(m, hf);
            if (!t) continue;
            dt_tn_layer_gguf(gg, sizeof gg, l, lt);
            tjob *j = add_job(m, p, t, gg, dtype);
            if (perm && (lt == DT_LT_Q || lt == DT_LT_Q_BIAS)) j->heads = c->num_heads;
            if (perm && (lt == DT_LT_K || lt == DT_LT_K_BIAS)) j->heads = c->num_kv_heads;
        }
    add_job(m, p, src_find(m, dt_tn_global(DT_GT_NORM)), dt_tn_global_gguf(DT_GT_NORM), dtype);
    // A tied head is the embedding: llama.cpp uses token_embd when output.weight is absent.
    const dt_st_tensor *head = src_find(m, dt_tn_global(DT_GT_LM_HEAD));
    if (head && !c->tie_word_embeddings) add_job(m, p, head, dt_tn_global_gguf(DT_GT_LM_HEAD), dtype);
    // Anything else in the checkpoint has no llama.cpp name; the converter drops rotary inv_freq too.
    for (size_t i = 0; i < src_count(m); i++) {
        const dt_st_tensor *t = src_at(m, i);
        bool used = false;
        for (size_t k = 0; k < p->n && !used; k++) used = p->jobs[k].src == t;
        if (!used && !(c->tie_word_embeddings && !strcmp(t->name, dt_tn_global(DT_GT_LM_HEAD))) &&
            !strstr(t->name, "rotary_emb.inv_freq"))
            dt_warn(m->ctx, "%s: tensor '%s' has no llama.cpp name; left out of the GGUF file", src_file(m, t), t->name);
    }
    return DT_OK;
}

static int merge_gguf(merger *m) {
    dt_ctx *ctx = m->ctx;
    int rc;
    // The base's storage dtype: that of its embedding (a llama2.c checkpoint is f32).
    const dt_st_tensor *embed = src_find(m, dt_tn_global(DT_GT_EMBED));
    const dt_dtype dtype = m->o->dtype >= 0 ? (dt_dtype)m->o->dtype : embed->dtype;
    const char *tokdir = m->o->tokenizer ? m->o->tokenizer : m->st ? m->o->model : NULL;
    if (!tokdir)
        return dt_fail(ctx, DT_EINPUT, "%s: a llama2.c checkpoint has no tokenizer.json; name a tokenizer folder for the GGUF file", m->o->model);
    gguf_plan p = {0};
    rc = plan_gguf(m, dtype, &p);
    if (!rc) rc = alloc_scratch(m, p.jobs, p.n);
    for (size_t i = 0; i < p.n && !rc; i++)
        if (job_bytes(&p.jobs[i]) > m->obuf_n) m->obuf_n = job_bytes(&p.jobs[i]);
    if (!rc && !(m->obuf = malloc(m->obuf_n ? m->obuf_n : 1))) rc = dt_fail(ctx, DT_ENOMEM, "out of memory for a %zu-byte tensor", m->obuf_n);
    dt_gguf_writer *w = NULL;
    if (!rc) rc = dt_gguf_writer_new(ctx, m->o->out, &w);
    char name[256];
    base_name(m->o->model, name, sizeof name);
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
        prefetch_start(&pf, m, p.jobs, order, p.n);
        m->pf = &pf;
        rc = dt_gguf_write_tensors(ctx, w, gguf_fill, &p);
        m->pf = NULL;
        prefetch_free(&pf);
    }
    free(order);
    if (!rc) rc = dt_gguf_writer_finish(ctx, w);
    dt_gguf_writer_free(w);
    free(p.jobs);
    return rc;
}

int dt_merge(dt_ctx *ctx, const dt_merge_opts *o) {
    if (o->dtype >= 0 && o->dtype != DT_F32 && o->dtype != DT_F16 && o->dtype != DT_BF16)
        return dt_fail(ctx, DT_EINPUT, "output dtype must be f32, f16 or bf16");
    merger m = {.ctx = ctx, .o = o};
    int rc = dt_weights_open(ctx, o->model, &m.cfg, &m.w);
    size_t len = strlen(o->model);
    const bool l2c = len >= 4 && !strcmp(o->model + len - 4, ".bin");
    if (!rc && !l2c) rc = dt_st_open(ctx, o->model, &m.st);
    if (!rc && o->format == DT_MERGE_GGUF) rc = dt_gguf_arch(ctx, &m.cfg, o->model, &m.arch);
    if (!rc) rc = check_base(&m);
    if (!rc) rc = load_adapters(&m);
    if (!rc) rc = o->format == DT_MERGE_GGUF ? merge_gguf(&m) : merge_hf(&m);
    for (int i = 0; m.ad && i < o->n_adapters; i++) dt_adapter_free(m.ad[i]);
    free(m.ad);
    free(m.scratch);
    free(m.obuf);
    dt_st_close(m.st);
    dt_weights_close(m.w);
    return rc;
}

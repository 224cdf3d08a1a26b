// Producing one output tensor of a merge: its rows read from the mapped source, widened to f32, folded
// (W + sum weight * scale * B A, row by row), permuted for llama.cpp and narrowed to the output dtype; and a
// prefetcher that computes these ahead of the writer while the writer's thread copies finished ones out.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "autograd/dtype.h"
#include "autograd/quant.h"
#include "peft/export_gguf.h"
#include "peft/merge_internal.h"

bool dt_mg_folds(const merger *m, int layer, int lt) {
    for (int i = 0; i < m->o->n_adapters && lt >= 0; i++)
        if (m->ad[i]->method->folds(m->ad[i], layer, lt)) return true;
    return false;
}

// Drops the pages of a memory-mapped safetensors tensor once used, so the resident size stays near one
// tensor rather than growing to the whole model; a later read would simply fault them in again. Only
// whole pages inside the tensor, and only for the read-only file mapping (llama2.c tensors may be heap).
void dt_mg_release(const merger *m, const dt_st_tensor *t) {
    if (!m->st || !t->nbytes) return;
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)t->data;
    uintptr_t start = (a + pg - 1) / pg * pg, end = (a + t->nbytes) / pg * pg;
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
}

// RB output rows are folded together: each vector of A loaded serves RB rows. Row buffers per thread: RB
// rows and one for staging an unaligned source row.
enum { RB = DT_FOLD_ROWS, ROW_BUFS = RB + 1 };

// rows[b] (cols), b < nb, folded with every adapter in turn, each by its method's fold (peft/method.h);
// rows beyond nb are zeroed scratch rows.
static void fold_rows(const merger *m, const tjob *j, const int64_t *src, int nb, int64_t cols, float *const *rows) {
    for (int i = 0; i < m->o->n_adapters; i++) {
        const dt_adapter *a = m->ad[i];
        if (a->method->folds(a, j->layer, j->lt))
            a->method->fold_rows(a, j->layer, j->lt, m->o->adapters[i].weight, src, nb, cols, rows);
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

// One thread's share of a folded or permuted tensor: output rows [r0, r1), RB at a time, each read from its
// source row (the q/k permutation picks it), widened to f32, folded and narrowed into dst.
typedef struct rows_task {
    tjob *j;
    void *dst;
    int64_t r0, r1;
    float *buf; // (ROW_BUFS, cols) f32
} rows_task;

// Quantizes one row into dst and adds its error against the exact row to the sums.
static void quantize_row(void *dst, dt_dtype t, const float *exact, float *tmp, int64_t cols, double *err2, double *ref2) {
    dt_quant_row_from_f32(t, exact, dst, cols);
    dt_quant_row_f32(t, dst, NULL, 0, cols, tmp);
    for (int64_t x = 0; x < cols; x++) {
        const double d = (double)tmp[x] - exact[x];
        *err2 += d * d;
        *ref2 += (double)exact[x] * exact[x];
    }
}

static void *run_rows(void *arg) {
    rows_task *task = arg;
    tjob *j = task->j;
    const dt_st_tensor *t = j->src;
    const int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    const size_t in_row = dt_type_row_bytes(t->dtype, cols), out_row = dt_type_row_bytes(j->out, cols);
    const bool aligned = dt_st_aligned(t), fold = dt_mg_folds(j->m, j->layer, j->lt);
    const bool qin = dt_is_quant(t->dtype), qout = dt_is_quant(j->out);
    float *stage = task->buf + RB * cols;
    double err2 = 0, ref2 = 0;
    if (qin && !fold && j->out == t->dtype) { // only permuted: move whole rows of blocks, no re-quantization
        for (int64_t r = task->r0; r < task->r1; r++)
            memcpy((char *)task->dst + (size_t)r * out_row,
                   (const char *)t->data + (size_t)(j->heads ? dt_gguf_qk_source_row(r, rows, j->heads) : r) * in_row, in_row);
        return NULL;
    }
    for (int64_t r0 = task->r0; r0 < task->r1; r0 += RB) {
        const int nb = task->r1 - r0 < RB ? (int)(task->r1 - r0) : RB;
        int64_t src[RB];
        float *w[RB];
        for (int b = 0; b < RB; b++) {
            w[b] = task->buf + b * cols;
            src[b] = b < nb ? (j->heads ? dt_gguf_qk_source_row(r0 + b, rows, j->heads) : r0 + b) : 0;
            if (b >= nb) { memset(w[b], 0, (size_t)cols * sizeof(float)); continue; }
            if (qin) { // block types: the row's blocks (and the tensor's state, for NF4) give the values
                dt_quant_row_f32(t->dtype, t->data, t->aux, src[b], cols, w[b]);
                continue;
            }
            const void *in = (const char *)t->data + (size_t)src[b] * in_row;
            if (!aligned) in = memcpy(stage, in, in_row);
            row_to_f32(w[b], in, t->dtype, cols);
        }
        if (fold) fold_rows(j->m, j, src, nb, cols, w);
        for (int b = 0; b < nb; b++) {
            char *o = (char *)task->dst + (size_t)(r0 + b) * out_row;
            if (qout) quantize_row(o, j->out, w[b], stage, cols, &err2, &ref2);
            else row_from_f32(o, j->out, w[b], cols);
        }
    }
    if (qout) {
        pthread_mutex_lock(&j->m->stat_mu);
        j->err2 += err2;
        j->ref2 += ref2;
        pthread_mutex_unlock(&j->m->stat_mu);
    }
    return NULL;
}

// Threads for the row loop: plain pthreads rather than OpenMP, whose idle workers spin between parallel
// regions and would take the second core from the kernel's writing of the output (measured: 4x slower).
static int threads_for(const merger *m) {
    int n = m->ctx->nthreads > 0 ? m->ctx->nthreads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

size_t dt_mg_job_bytes(const tjob *j) {
    size_t n = dt_type_row_bytes(j->out, j->ndim ? j->shape[j->ndim - 1] : 1);
    for (int d = 0; d + 1 < j->ndim; d++) n *= (size_t)j->shape[d];
    return n;
}

// Writes job j's bytes into dst, splitting the rows of a folded or permuted tensor over nt threads that use
// the row buffers at bufs (ROW_BUFS rows each).
static int produce_with(tjob *j, void *dst, int nt, float *bufs) {
    merger *m = j->m;
    if (!j->src) {
        dt_gguf_rope_factors(&m->cfg, dst);
        return DT_OK;
    }
    const dt_st_tensor *t = j->src;
    int rc = DT_OK;
    j->err2 = j->ref2 = 0; // all rows are produced here (again, if a stopped prefetcher did some)
    if (!dt_mg_is_compute(j)) {
        rc = dt_st_tensor_copy(m->ctx, dt_mg_src_file(m, t), t, j->out, dst);
    } else {
        const int64_t rows = t->shape[0];
        if (rows < 64 * nt) nt = 1; // tiny tensors: a thread costs more than it saves
        rows_task tasks[MAX_THREADS];
        pthread_t tid[MAX_THREADS];
        bool started[MAX_THREADS] = {false};
        for (int i = 0; i < nt; i++) {
            tasks[i] = (rows_task){j, dst, rows * i / nt, rows * (i + 1) / nt, bufs + (size_t)i * ROW_BUFS * m->row_cols};
            if (i > 0) started[i] = !pthread_create(&tid[i], NULL, run_rows, &tasks[i]);
        }
        run_rows(&tasks[0]);
        for (int i = 1; i < nt; i++) {
            if (started[i]) pthread_join(tid[i], NULL);
            else run_rows(&tasks[i]); // no thread could be started: do its share here
        }
    }
    dt_mg_release(m, t);
    return rc;
}

static int produce(tjob *j, void *dst) { return produce_with(j, dst, threads_for(j->m), j->m->scratch); }

// ---- computing ahead -----------------------------------------------------------------------------------
// The writers ask for one tensor, then write it, then ask for the next. A second thread computes the
// folded/permuted tensors ahead into a ring of slots, in the order the writer will ask for them, while the
// writer's thread copies finished tensors into the file; when that thread gets ahead and waits for a
// tensor, it computes rows of it too (rows are handed out in chunks). If the writer asks for something else
// than predicted, the prefetcher is stopped and everything is computed on demand (always correct).

// Row by row: permuted, folded, or written as a quantized type other than the source's (quantizing a
// plain copy of the same type would only add error).
bool dt_mg_is_compute(const tjob *j) {
    return j->src && (j->heads || dt_mg_folds(j->m, j->layer, j->lt) || (dt_is_quant(j->out) && j->out != j->src->dtype));
}

bool dt_mg_is_plain(const tjob *j) { return j->src && !dt_mg_is_compute(j) && j->out == j->src->dtype; }

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
        if (finished) dt_mg_release(p->m, j->src);
    }
}

static void *prefetch_run(void *arg) {
    prefetch *p = arg;
    float *bufs = p->m->scratch + (size_t)threads_for(p->m) * ROW_BUFS * p->m->row_cols; // this thread's row buffers
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

void dt_mg_prefetch_free(prefetch *p) {
    prefetch_stop(p);
    for (int s = 0; s < NSLOT; s++) free(p->slots[s].buf);
    free(p->order);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

// Starts computing jobs[order[i]] ahead (order: indices into jobs, the writer's order). Without a second
// thread or memory for the slots it stays off, and every tensor is produced on demand.
void dt_mg_prefetch_start(prefetch *p, merger *m, tjob *jobs, const size_t *order, size_t n) {
    memset(p, 0, sizeof *p);
    p->m = m;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    size_t biggest = 0;
    if (!(p->order = malloc((n ? n : 1) * sizeof *p->order))) return;
    for (size_t i = 0; i < n; i++)
        if (dt_mg_is_compute(&jobs[order[i]])) {
            p->order[p->n++] = &jobs[order[i]];
            if (dt_mg_job_bytes(&jobs[order[i]]) > biggest) biggest = dt_mg_job_bytes(&jobs[order[i]]);
        }
    for (int s = 0; s < NSLOT; s++)
        if (!(p->slots[s].buf = malloc(biggest ? biggest : 1))) return;
    p->started = p->n > 0 && !pthread_create(&p->thread, NULL, prefetch_run, p);
}

// A computed job's f16 output with values beyond f16's range: refused as dt_st_tensor_copy refuses a
// converted one (a folded weight can overflow where the base did not).
static int check_f16(tjob *j, const void *bytes) {
    if (j->out != DT_F16 || !j->src) return DT_OK;
    const int64_t inf = dt_f16_count_inf(bytes, (int64_t)(dt_mg_job_bytes(j) / 2));
    if (!inf) return DT_OK;
    return dt_fail(j->m->ctx, DT_EINPUT, "%s: tensor '%s': %lld of the merged values are beyond f16's range (at most "
                   "65504 in magnitude): merge with --dtype bf16 or f32", dt_mg_src_file(j->m, j->src), j->src->name,
                   (long long)inf);
}

// Job j's bytes: the prefetched slot when j is the one predicted (returned in *out, valid until the next
// call), else produced into dst.
int dt_mg_fetch(prefetch *p, tjob *j, void *dst, const void **out) {
    *out = dst;
    if (p && p->started && dt_mg_is_compute(j)) {
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
            return check_f16(j, s->buf);
        }
        prefetch_stop(p); // not the predicted order: compute on demand from here on
    }
    int rc = produce(j, dst);
    return rc || !dt_mg_is_compute(j) ? rc : check_f16(j, dst);
}

// Fills a job for source tensor t (output name and dtype set by the caller) and grows the scratch need.
void dt_mg_job_init(merger *m, tjob *j, const dt_st_tensor *t) {
    memset(j, 0, sizeof *j);
    j->m = m;
    j->src = t;
    j->lt = -1;
    j->ndim = t->ndim;
    memcpy(j->shape, t->shape, sizeof j->shape);
    snprintf(j->name, sizeof j->name, "%s", t->name);
    dt_layer_tensor lt;
    char o_bias[256];
    if (!dt_tn_parse_layer(t->name, &j->layer, &lt)) {
        j->lt = (int)lt;
    } else if (!strcmp(t->name, dt_tn_global(DT_GT_EMBED))) {
        j->layer = -1;
        j->lt = DT_FOLD_EMBED;
    } else if (!strcmp(t->name, dt_tn_global(DT_GT_LM_HEAD))) {
        j->layer = -1;
        j->lt = DT_FOLD_LM_HEAD;
    } else { // o_proj's bias is no dt_layer_tensor: "model.layers.N.self_attn.o_proj.bias"
        int layer;
        if (sscanf(t->name, "model.layers.%d.", &layer) == 1 && layer >= 0 && layer < 1000000) {
            dt_tn_module(o_bias, sizeof o_bias, "", layer, DT_MOD_O, ".bias");
            if (!strcmp(t->name, o_bias)) { j->layer = layer; j->lt = DT_FOLD_O_BIAS; }
        }
    }
}

// Row buffers for the widest folded or permuted tensor: ROW_BUFS rows of f32 for each row-loop thread and for
// the prefetcher.
int dt_mg_alloc_scratch(merger *m, const tjob *jobs, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (dt_mg_is_compute(&jobs[i])) {
            size_t c = jobs[i].ndim == 2 ? (size_t)jobs[i].shape[1] : 1;
            if (c > m->row_cols) m->row_cols = c;
        }
    const size_t need = m->row_cols * ROW_BUFS * (size_t)(threads_for(m) + 1);
    if (need && !(m->scratch = malloc(need * sizeof(float))))
        return dt_fail(m->ctx, DT_ENOMEM, "out of memory for %zu row buffers", need);
    return DT_OK;
}


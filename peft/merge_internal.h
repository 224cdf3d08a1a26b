// Internal to the merge (peft/merge*.c): the state of one merge, the job that produces one output
// tensor, and the prefetcher that computes folded tensors ahead of the writer.
//   merge.c         the public API, checks of the base model, loading the adapters, dt_merge
//   merge_tensor.c  producing a tensor: read, fold (W + s B A row by row), permute, cast; prefetching
//   merge_hf.c      the Hugging Face folder output
//   merge_gguf.c    the GGUF model output
#ifndef DT_MERGE_INTERNAL_H
#define DT_MERGE_INTERNAL_H
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include "models/safetensors.h"
#include "models/weights.h"
#include "peft/merge.h"

#define MAX_THREADS 32

typedef struct merger {
    dt_ctx *ctx;
    const dt_merge_opts *o;
    dt_model_config cfg;
    dt_weights *w;        // the model (its config; the tensors of a llama2.c file)
    dt_safetensors *st;   // a Hugging Face model's shards, NULL for llama2.c
    dt_adapter **ad;      // (n_adapters)
    const char *arch;     // gguf: llama.cpp's architecture name
    float *scratch;       // (threads + 1, ROW_BUFS, row_cols) f32 row buffers: the row loop's and the prefetcher's
    size_t row_cols;      // the widest row of a folded or permuted tensor
    struct prefetch *pf;  // computing ahead of the writer, or NULL
    void *obuf;           // gguf: one tensor in its output dtype
    size_t obuf_n;
    pthread_mutex_t stat_mu; // guards the re-quantization error sums of the jobs
    // Tensors the merged model gains (peft/method.h, DT_FOLD_*): q/k/v/o biases the base lacks (zeros
    // before folding) and an untied lm_head (the embedding's bytes); found by dt_mg_src_find like the
    // source's own, written after them.
    dt_st_tensor *extra;  // (n_extra)
    size_t n_extra;
    void *zeros;          // f32 zeros for the new biases, as wide as the widest
    bool attention_bias;  // the output's config sets attention_bias: true (it was false)
    bool untie;           // the output's config sets tie_word_embeddings: false (it was true)
} merger;

// The source tensors: a Hugging Face model's shards, or a llama2.c file's tensors.
static inline size_t dt_mg_src_count(const merger *m) { return m->st ? dt_st_count(m->st) : dt_weights_count(m->w); }
static inline const dt_st_tensor *dt_mg_src_at(const merger *m, size_t i) { return m->st ? dt_st_at(m->st, i) : dt_weights_at(m->w, i); }
// An added tensor comes first: the untied lm_head of a tied model whose checkpoint also stores an
// lm_head.weight (ignored when tied, by transformers as by our loader) replaces that stored copy.
static inline const dt_st_tensor *dt_mg_src_find(const merger *m, const char *n) {
    for (size_t i = 0; i < m->n_extra; i++)
        if (!strcmp(m->extra[i].name, n)) return &m->extra[i];
    return m->st ? dt_st_find(m->st, n) : dt_weights_find(m->w, n);
}
// Whether source tensor t (one of dt_mg_src_at's) is replaced by an added tensor of the same name.
static inline bool dt_mg_shadowed(const merger *m, const dt_st_tensor *t) {
    for (size_t i = 0; i < m->n_extra; i++)
        if (!strcmp(m->extra[i].name, t->name)) return true;
    return false;
}
static inline const char *dt_mg_src_file(const merger *m, const dt_st_tensor *t) {
    return m->st ? dt_st_shard_path(m->st, t->shard) : dt_weights_path(m->w);
}

// One output tensor and how to make it.
typedef struct tjob {
    merger *m;
    const dt_st_tensor *src; // NULL for rope_freqs.weight (computed)
    char name[96];           // output name
    int layer, lt;           // the HF layer tensor, or lt = -1
    int heads;               // permute q/k rows over this many heads; 0: no permutation
    dt_dtype out;
    int ndim;
    int64_t shape[DT_MAX_DIMS];
    double err2, ref2;       // quantized output: sums of squares of (re-quantized - exact) and of exact
} tjob;

// Computing ahead of the writer (merge_tensor.c).
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

// Whether some adapter has a LoRA on (layer, layer tensor lt).
bool dt_mg_folds(const merger *m, int layer, int lt);
// Whether a job needs computing (a fold or a permutation), not just a copy or conversion.
bool dt_mg_is_compute(const tjob *j);
// Whether a job's bytes are the source tensor's as they are (no fold, permutation or cast): the writers
// then take them straight from the mapping, with no copy and no buffer.
bool dt_mg_is_plain(const tjob *j);
size_t dt_mg_job_bytes(const tjob *j);
// Drops the mapped pages of a source tensor once written (see merge_tensor.c).
void dt_mg_release(const merger *m, const dt_st_tensor *t);
// A job for source tensor t under its own name; the caller sets the output name and dtype.
void dt_mg_job_init(merger *m, tjob *j, const dt_st_tensor *t);
// Row buffers for the widest compute job of jobs (n).
int dt_mg_alloc_scratch(merger *m, const tjob *jobs, size_t n);
// Starts computing the compute jobs among jobs[order[0..n)] ahead, in that order (the writer's).
void dt_mg_prefetch_start(prefetch *p, merger *m, tjob *jobs, const size_t *order, size_t n);
void dt_mg_prefetch_free(prefetch *p);
// Job j's bytes: a prefetched slot (in *out, valid until the next call) or produced into dst.
int dt_mg_fetch(prefetch *p, tjob *j, void *dst, const void **out);

// The last component of a path, without trailing slashes, into buf.
void dt_mg_base_name(const char *path, char *buf, size_t n);
int dt_mg_write_hf(merger *m);
int dt_mg_write_gguf(merger *m);

#endif

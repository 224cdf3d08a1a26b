// Batches of a dataset in the model's dt_batch layout, either one example per row padded to the longest
// in the batch, or several examples packed into rows of up to max_seq_len tokens.
//
// The order of an epoch is a Fisher-Yates shuffle (dt_rng) of the given examples whose generator state is
// a fixed function of (seed, epoch), so batch k of epoch e is the same in every run and after a resume.
// Batches are built from a plan of rows: packing fills each row greedily with the next examples in order
// until the next one does not fit (examples were already cut to max_seq_len at load time, so each fits).
//
// Packed rows: position ids restart at 0 for every example and seg_start holds the row position where each
// token's example starts, so attention stays inside an example; the first label of every example is -100
// (the dataset guarantees it), so no token is trained to predict the next example's first token under the
// shift convention (position t is scored on labels[t+1]). The padding at a row's end is its own segment.
// Unpacked rows hold their example's first label as encoded (dt_dataset_first_label), which only a
// prompt-tuning forward scores (prompt tuning cannot pack); n_trained does not count it, so it stays
// dt_count_targets(labels, B, T, 0). Unpacked rows are right-padded: pad id (tokenizer pad, else EOS), label -100. pos and seg_start are NULL
// then: with causal attention and padding only at the end, no real token can see a pad, so no attention
// mask is needed, and the pads' own outputs are never scored.
// T is the longest row of the batch (at most max_seq_len); the last batch of an epoch may have fewer rows.
#ifndef DT_PACKING_H
#define DT_PACKING_H
#include <stdbool.h>
#include <stdint.h>
#include "datasets/dataset.h"
#include "models/llama.h"

typedef struct dt_batcher dt_batcher;

typedef struct dt_batcher_opts {
    int64_t batch_size; // rows per batch
    bool packing;       // needs row_len > 0 or the dataset loaded with max_seq_len > 0
    bool shuffle;       // a new order every epoch; false: the given order every epoch
    uint64_t seed;
    int64_t row_len;    // packed rows' length, at least the longest example; 0 = the dataset's max_seq_len
} dt_batcher_opts;

// One batch and the arrays it points into; start from {0}, reuse across calls, free with dt_batch_buf_free.
// Several of them let a caller hold the micro-batches of one optimizer step and sum their n_trained first.
typedef struct dt_batch_buf {
    dt_batch batch;
    int64_t n_trained;  // labels that are scored (!= -100): this batch's part of the loss denominator
    int64_t n_tokens;   // real tokens (not padding)
    int64_t n_examples;
    int32_t *input_ids, *labels, *pos, *seg_start; // (cap) each
    int64_t cap;
} dt_batch_buf;
void dt_batch_buf_free(dt_batch_buf *b);

// The data-order state to checkpoint: the epoch, the next batch in it, and the shuffle generator's state at
// the epoch's start (a function of seed and epoch, stored so a resume can check that the seed matches).
typedef struct dt_batcher_state {
    uint64_t epoch;
    int64_t index;
    uint64_t rng;
} dt_batcher_state;

// examples: the dataset indices to draw from (e.g. the train list of dt_dataset_split), copied; NULL = all.
// The dataset must outlive the batcher.
int  dt_batcher_create(dt_ctx *ctx, const dt_dataset *ds, const size_t *examples, size_t n,
                       const dt_batcher_opts *opts, dt_batcher **out);
void dt_batcher_free(dt_batcher *b);
// The number of batches in an epoch (packing makes it depend on the epoch's order).
int  dt_batcher_epoch_batches(dt_ctx *ctx, dt_batcher *b, uint64_t epoch, int64_t *n);
// Fills batch `index` of `epoch`; an index past the epoch's end is DT_EINPUT.
int  dt_batcher_get(dt_ctx *ctx, dt_batcher *b, uint64_t epoch, int64_t index, dt_batch_buf *out);
// The batch at the current state, then advances it (to the next epoch after an epoch's last batch).
int  dt_batcher_next(dt_ctx *ctx, dt_batcher *b, dt_batch_buf *out);
dt_batcher_state dt_batcher_get_state(const dt_batcher *b);
// A state whose rng does not belong to its epoch under this seed is DT_EINPUT (a different seed).
int  dt_batcher_set_state(dt_ctx *ctx, dt_batcher *b, const dt_batcher_state *s);

#endif

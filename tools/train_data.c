// The trainer's data: datasets loaded from the recipe, split, and served through dt_batcher, so batch
// `index` of epoch `epoch` is a pure function of the recipe (what makes resuming bit-identical).
#include "tools/train_data.h"
#include <stdlib.h>
#include <string.h>
#include "datasets/packing.h"

typedef struct {
    dt_dataset *train, *val;   // val NULL when the validation set is a split of train
    dt_batcher *tr, *va;       // va NULL without validation data
    dt_batch_buf *bufs;        // (n_bufs) one per micro-batch of an optimizer step
    int n_bufs;
    dt_batch_buf vbuf;
} impl;

int dt_train_data_open(dt_ctx *ctx, dt_train_data *d, const dt_recipe *r, const dt_tokenizer *tok,
                       const dt_model_config *cfg) {
    memset(d, 0, sizeof *d);
    impl *p = calloc(1, sizeof *p);
    if (!p) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    d->impl = p;
    dt_dataset_opts o = {dt_recipe_format_name(r->data.format), dt_recipe_template_name(r->data.chat_template),
                         r->data.train_on_prompt, r->data.skip_bad_lines, r->data.max_seq_len,
                         (int32_t)cfg->vocab_size};
    int rc = dt_dataset_load(ctx, (const char *const *)r->data.train.items, (size_t)r->data.train.n, tok, &o, &p->train);
    if (!rc && r->data.val.n) rc = dt_dataset_load(ctx, (const char *const *)r->data.val.items, (size_t)r->data.val.n, tok, &o, &p->val);
    if (rc) return rc;
    dt_batcher_opts bo = {r->train.batch_size, r->data.packing, r->data.shuffle, (uint64_t)r->train.seed, 0};
    size_t *tr = NULL, *va = NULL, ntr = dt_dataset_size(p->train), nva = 0;
    if (r->data.val_split > 0 && (rc = dt_dataset_split(ctx, p->train, r->data.val_split, bo.seed, &tr, &ntr, &va, &nva)))
        return rc;
    rc = dt_batcher_create(ctx, p->train, tr, ntr, &bo, &p->tr);
    bo.shuffle = false; // validation is read in file order
    if (!rc && p->val) rc = dt_batcher_create(ctx, p->val, NULL, dt_dataset_size(p->val), &bo, &p->va);
    else if (!rc && nva) rc = dt_batcher_create(ctx, p->train, va, nva, &bo, &p->va);
    free(tr);
    free(va);
    if (!rc) rc = dt_batcher_epoch_batches(ctx, p->tr, 0, &d->n_batches);
    if (!rc && p->va) rc = dt_batcher_epoch_batches(ctx, p->va, 0, &d->n_val_batches);
    if (rc) return rc;
    if (d->n_batches == 0) return dt_fail(ctx, DT_EINPUT, "%s: data.train: no training examples are left", r->recipe_path);
    p->n_bufs = r->train.gradient_accumulation_steps;
    p->bufs = calloc((size_t)p->n_bufs, sizeof *p->bufs);
    if (!p->bufs) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    const dt_dataset_stats *st = dt_dataset_get_stats(p->train);
    if (st->max_len > cfg->max_position_embeddings && cfg->max_position_embeddings > 0)
        dt_warn(ctx, "examples of %lld tokens exceed the model's max_position_embeddings (%d)", (long long)st->max_len,
                cfg->max_position_embeddings);
    // The forward refuses sequences longer than a sliding window (models/llama.c); said here, before any
    // step, instead of at the first batch that holds one.
    const dt_dataset_stats *sv = p->val ? dt_dataset_get_stats(p->val) : NULL;
    int64_t longest = sv && sv->max_len > st->max_len ? sv->max_len : st->max_len;
    if (cfg->sliding_window > 0 && longest > cfg->sliding_window)
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: examples of %lld tokens are longer than the model's sliding_window (%d), "
                       "and sliding-window attention is not supported: set data.max_seq_len to %d or less",
                       r->recipe_path, (long long)longest, cfg->sliding_window, cfg->sliding_window);
    return DT_OK;
}

int64_t dt_train_data_epoch_batches(dt_ctx *ctx, dt_train_data *d, int64_t epoch) {
    impl *p = d->impl;
    int64_t n = 0;
    return dt_batcher_epoch_batches(ctx, p->tr, (uint64_t)epoch, &n) ? -1 : n;
}

int dt_train_data_batch(dt_ctx *ctx, dt_train_data *d, int64_t epoch, int64_t index, int slot, dt_batch *out) {
    impl *p = d->impl;
    dt_batch_buf *b = &p->bufs[slot % p->n_bufs];
    int rc = dt_batcher_get(ctx, p->tr, (uint64_t)epoch, index, b);
    if (!rc) *out = b->batch;
    return rc;
}

int64_t dt_train_data_val_batches(const dt_train_data *d) { return d->n_val_batches; }

int dt_train_data_val_batch(dt_ctx *ctx, dt_train_data *d, int64_t index, dt_batch *out) {
    impl *p = d->impl;
    int rc = dt_batcher_get(ctx, p->va, 0, index, &p->vbuf);
    if (!rc) *out = p->vbuf.batch;
    return rc;
}

void dt_train_data_close(dt_train_data *d) {
    impl *p = d->impl;
    if (!p) return;
    for (int i = 0; i < p->n_bufs; i++) dt_batch_buf_free(&p->bufs[i]);
    free(p->bufs);
    dt_batch_buf_free(&p->vbuf);
    dt_batcher_free(p->tr);
    dt_batcher_free(p->va);
    dt_dataset_free(p->train);
    dt_dataset_free(p->val);
    free(p);
    d->impl = NULL;
}

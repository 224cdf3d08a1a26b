// Batches for the trainer. Examples are grouped into rows once (one example per row, or several
// packed into max_seq_len when data.packing is on, in a seed-shuffled order); each epoch then visits
// the rows in an order shuffled by (seed, epoch). Batch `index` of epoch `epoch` is therefore a pure
// function of the recipe, which is what makes resuming bit-identical. Buffers are allocated once.
#include "tools/train_data.h"
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"
#include "datasets/dataset.h"

typedef struct { size_t first, count; int64_t len; } row; // examples order[first .. first+count)

typedef struct {
    const dt_dataset *ds;
    size_t *order;      // example indices in row order
    row *rows;
    size_t n_rows;
} rowset;

typedef struct {
    dt_dataset *train, *val;   // val may be NULL (or the same object as train, for val_split)
    rowset tr, va;
    size_t *perm;              // (tr.n_rows) this epoch's row order
    int64_t perm_epoch;
    int B;
    bool packing, shuffle;
    int64_t T;                 // padded row length
    uint64_t seed;
    int32_t *ids, *labels, *pos, *seg; // (B, T) each
} impl;

static int build_rows(dt_ctx *ctx, rowset *rs, const dt_dataset *ds, const size_t *idx, size_t n, bool packing,
                      int64_t T, bool shuffle, uint64_t seed) {
    rs->ds = ds;
    rs->order = malloc((n ? n : 1) * sizeof *rs->order);
    rs->rows = malloc((n ? n : 1) * sizeof *rs->rows);
    if (!rs->order || !rs->rows) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    memcpy(rs->order, idx, n * sizeof *idx);
    if (packing && shuffle) { // pack from a shuffled order so rows mix sources
        dt_rng rng = {seed ^ 0x5bd1e995u};
        for (size_t i = n; i > 1; i--) { size_t j = dt_rng_below(&rng, i); size_t t = rs->order[i - 1]; rs->order[i - 1] = rs->order[j]; rs->order[j] = t; }
    }
    rs->n_rows = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t len = dt_dataset_example(ds, rs->order[i], NULL, NULL);
        row *last = rs->n_rows ? &rs->rows[rs->n_rows - 1] : NULL;
        if (packing && last && last->len + len <= T) { last->count++; last->len += len; continue; }
        rs->rows[rs->n_rows++] = (row){i, 1, len};
    }
    return DT_OK;
}

static void free_rows(rowset *rs) { free(rs->order); free(rs->rows); }

int dt_train_data_open(dt_ctx *ctx, dt_train_data *d, const dt_recipe *r, const dt_tokenizer *tok,
                       const dt_model_config *cfg) {
    memset(d, 0, sizeof *d);
    impl *p = calloc(1, sizeof *p);
    if (!p) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    d->impl = p;
    dt_dataset_opts o = {dt_recipe_format_name(r->data.format), dt_recipe_template_name(r->data.chat_template),
                         r->data.train_on_prompt, r->data.skip_bad_lines, r->data.max_seq_len};
    int rc = dt_dataset_load(ctx, (const char *const *)r->data.train.items, (size_t)r->data.train.n, tok, &o, &p->train);
    if (!rc && r->data.val.n) rc = dt_dataset_load(ctx, (const char *const *)r->data.val.items, (size_t)r->data.val.n, tok, &o, &p->val);
    if (rc) return rc;
    p->B = r->train.batch_size;
    p->packing = r->data.packing;
    p->shuffle = r->data.shuffle;
    p->seed = (uint64_t)r->train.seed;
    p->perm_epoch = -1;
    const dt_dataset_stats *st = dt_dataset_get_stats(p->train);
    p->T = p->packing ? r->data.max_seq_len : st->max_len;
    size_t *tr = NULL, *va = NULL, ntr = 0, nva = 0;
    if (r->data.val_split > 0) {
        if ((rc = dt_dataset_split(ctx, p->train, r->data.val_split, p->seed, &tr, &ntr, &va, &nva))) return rc;
    } else {
        ntr = dt_dataset_size(p->train);
        tr = malloc((ntr ? ntr : 1) * sizeof *tr);
        for (size_t i = 0; i < ntr; i++) tr[i] = i;
    }
    rc = build_rows(ctx, &p->tr, p->train, tr, ntr, p->packing, p->T, p->shuffle, p->seed);
    if (!rc && p->val) {
        size_t n = dt_dataset_size(p->val);
        size_t *all = malloc((n ? n : 1) * sizeof *all);
        for (size_t i = 0; i < n; i++) all[i] = i;
        int64_t vt = p->packing ? p->T : dt_dataset_get_stats(p->val)->max_len;
        if (vt > p->T) p->T = vt;
        rc = build_rows(ctx, &p->va, p->val, all, n, p->packing, p->T, false, p->seed);
        free(all);
    } else if (!rc && nva) {
        rc = build_rows(ctx, &p->va, p->train, va, nva, p->packing, p->T, false, p->seed);
    }
    free(tr);
    free(va);
    if (rc) return rc;
    if (p->tr.n_rows == 0) return dt_fail(ctx, DT_EINPUT, "%s: data.train: no training examples are left", r->recipe_path);
    if (p->T > cfg->max_position_embeddings && cfg->max_position_embeddings > 0)
        dt_warn(ctx, "sequences of %lld tokens exceed the model's max_position_embeddings (%d)", (long long)p->T, cfg->max_position_embeddings);
    size_t cells = (size_t)p->B * (size_t)p->T;
    p->ids = malloc(cells * sizeof(int32_t));
    p->labels = malloc(cells * sizeof(int32_t));
    p->pos = malloc(cells * sizeof(int32_t));
    p->seg = malloc(cells * sizeof(int32_t));
    p->perm = malloc(p->tr.n_rows * sizeof *p->perm);
    if (!p->ids || !p->labels || !p->pos || !p->seg || !p->perm) return dt_fail(ctx, DT_ENOMEM, "out of memory for batches");
    d->n_batches = (int64_t)((p->tr.n_rows + (size_t)p->B - 1) / (size_t)p->B);
    d->n_val_batches = (int64_t)((p->va.n_rows + (size_t)p->B - 1) / (size_t)p->B);
    if (st->n_truncated) dt_warn(ctx, "%zu training examples were longer than data.max_seq_len and were truncated", st->n_truncated);
    return DT_OK;
}

// Fills the batch of rows rs->rows[rowidx[0..n)].
static void fill(impl *p, const rowset *rs, const size_t *rowidx, size_t n, dt_batch *out) {
    int64_t T = 1;
    for (size_t b = 0; b < n; b++) if (rs->rows[rowidx[b]].len > T) T = rs->rows[rowidx[b]].len;
    if (p->packing) T = p->T; // packed rows keep one shape, so the arena sizes once
    int32_t pad = dt_dataset_pad_id(rs->ds);
    for (size_t b = 0; b < n; b++) {
        const row *rw = &rs->rows[rowidx[b]];
        int64_t t = 0;
        for (size_t e = 0; e < rw->count; e++) {
            const int32_t *ids, *lab;
            int64_t len = dt_dataset_example(rs->ds, rs->order[rw->first + e], &ids, &lab);
            for (int64_t k = 0; k < len; k++, t++) {
                p->ids[b * T + t] = ids[k];
                p->labels[b * T + t] = lab[k];
                p->pos[b * T + t] = (int32_t)k;
                p->seg[b * T + t] = (int32_t)(t - k);
            }
        }
        for (; t < T; t++) { // right padding: never trained, and causal attention never looks ahead at it
            p->ids[b * T + t] = pad;
            p->labels[b * T + t] = -100;
            p->pos[b * T + t] = (int32_t)t;
            p->seg[b * T + t] = (int32_t)t;
        }
    }
    *out = (dt_batch){(int64_t)n, T, p->ids, p->labels, p->packing ? p->pos : NULL, p->packing ? p->seg : NULL};
}

int dt_train_data_batch(dt_ctx *ctx, dt_train_data *d, int64_t epoch, int64_t index, dt_batch *out) {
    impl *p = d->impl;
    if (index < 0 || index >= d->n_batches) return dt_fail(ctx, DT_EINTERNAL, "batch %lld out of range", (long long)index);
    if (p->perm_epoch != epoch) {
        for (size_t i = 0; i < p->tr.n_rows; i++) p->perm[i] = i;
        if (p->shuffle) {
            dt_rng rng = {p->seed * 0x9e3779b97f4a7c15ull + (uint64_t)epoch};
            for (size_t i = p->tr.n_rows; i > 1; i--) {
                size_t j = dt_rng_below(&rng, i), t = p->perm[i - 1];
                p->perm[i - 1] = p->perm[j];
                p->perm[j] = t;
            }
        }
        p->perm_epoch = epoch;
    }
    size_t first = (size_t)index * (size_t)p->B, n = p->tr.n_rows - first < (size_t)p->B ? p->tr.n_rows - first : (size_t)p->B;
    fill(p, &p->tr, p->perm + first, n, out);
    return DT_OK;
}

int64_t dt_train_data_val_batches(const dt_train_data *d) { return d->n_val_batches; }

int dt_train_data_val_batch(dt_ctx *ctx, dt_train_data *d, int64_t index, dt_batch *out) {
    impl *p = d->impl;
    if (index < 0 || index >= d->n_val_batches) return dt_fail(ctx, DT_EINTERNAL, "val batch %lld out of range", (long long)index);
    size_t first = (size_t)index * (size_t)p->B, n = p->va.n_rows - first < (size_t)p->B ? p->va.n_rows - first : (size_t)p->B;
    size_t idx[1024];
    for (size_t i = 0; i < n; i++) idx[i] = first + i;
    fill(p, &p->va, idx, n, out);
    return DT_OK;
}

void dt_train_data_close(dt_train_data *d) {
    impl *p = d->impl;
    if (!p) return;
    free_rows(&p->tr);
    free_rows(&p->va);
    dt_dataset_free(p->train);
    dt_dataset_free(p->val);
    free(p->perm);
    free(p->ids);
    free(p->labels);
    free(p->pos);
    free(p->seg);
    free(p);
    d->impl = NULL;
}

#include "datasets/packing.h"
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"

struct dt_batcher {
    const dt_dataset *ds;
    dt_batcher_opts o;
    int64_t row_cap;  // the length of a packed row
    size_t n;
    size_t *base;     // (n) the examples in their given order
    size_t *order;    // (n) the planned epoch's order
    size_t *row;      // (n + 1) row r holds order[row[r] .. row[r+1])
    size_t n_rows;
    uint64_t planned; // the epoch `order` and `row` describe
    bool have_plan;
    dt_batcher_state st;
};

void dt_batch_buf_free(dt_batch_buf *b) {
    free(b->input_ids);
    free(b->labels);
    free(b->pos);
    free(b->seg_start);
    memset(b, 0, sizeof *b);
}

// Every epoch's generator starts from a hash of (seed, epoch), not from where the previous epoch's left
// off, so an epoch can be planned without replaying the ones before it.
static uint64_t epoch_rng(uint64_t seed, uint64_t epoch) {
    dt_rng r = {seed + epoch * 0xD1B54A32D192ED03ull};
    return dt_rng_next(&r);
}

static int64_t len_of(const dt_batcher *b, size_t ex) { return dt_dataset_example(b->ds, ex, NULL, NULL); }

static void plan(dt_batcher *b, uint64_t epoch) {
    if (b->have_plan && b->planned == epoch) return;
    memcpy(b->order, b->base, b->n * sizeof *b->order);
    if (b->o.shuffle) {
        dt_rng r = {epoch_rng(b->o.seed, epoch)};
        for (size_t i = b->n - 1; i > 0; i--) {
            size_t j = (size_t)dt_rng_below(&r, i + 1), t = b->order[i];
            b->order[i] = b->order[j];
            b->order[j] = t;
        }
    }
    size_t r = 0;
    for (size_t i = 0; i < b->n;) {
        b->row[r++] = i;
        int64_t fill = len_of(b, b->order[i++]);
        if (b->o.packing)
            while (i < b->n && fill + len_of(b, b->order[i]) <= b->row_cap) fill += len_of(b, b->order[i++]);
    }
    b->row[r] = b->n;
    b->n_rows = r;
    b->planned = epoch;
    b->have_plan = true;
}

int dt_batcher_create(dt_ctx *ctx, const dt_dataset *ds, const size_t *examples, size_t n,
                      const dt_batcher_opts *opts, dt_batcher **out) {
    *out = NULL;
    if (!examples) n = dt_dataset_size(ds);
    if (!n) return dt_fail(ctx, DT_EINPUT, "no examples to make batches from");
    if (opts->batch_size < 1) return dt_fail(ctx, DT_EINPUT, "batch_size must be >= 1, got %lld", (long long)opts->batch_size);
    const int64_t row_cap = opts->row_len > 0 ? opts->row_len : dt_dataset_max_seq_len(ds);
    if (opts->packing && row_cap <= 0)
        return dt_fail(ctx, DT_EINPUT, "packing needs max_seq_len > 0 (the length of a packed row)");
    dt_batcher *b = calloc(1, sizeof *b);
    if (!b) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    b->ds = ds;
    b->o = *opts;
    b->row_cap = row_cap;
    b->n = n;
    b->base = malloc(n * sizeof *b->base);
    b->order = malloc(n * sizeof *b->order);
    b->row = malloc((n + 1) * sizeof *b->row);
    if (!b->base || !b->order || !b->row) {
        dt_batcher_free(b);
        return dt_fail(ctx, DT_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        b->base[i] = examples ? examples[i] : i;
        if (b->base[i] >= dt_dataset_size(ds)) {
            size_t bad = b->base[i];
            dt_batcher_free(b);
            return dt_fail(ctx, DT_EINTERNAL, "example index %zu out of range (%zu examples)", bad, dt_dataset_size(ds));
        }
        // A packed row holds whole examples: one longer than the row would make a row past its length.
        if (opts->packing && len_of(b, b->base[i]) > row_cap) {
            int64_t len = len_of(b, b->base[i]);
            dt_batcher_free(b);
            return dt_fail(ctx, DT_EINTERNAL, "example of %lld tokens is longer than a packed row (%lld)",
                           (long long)len, (long long)row_cap);
        }
    }
    b->st = (dt_batcher_state){0, 0, epoch_rng(opts->seed, 0)};
    *out = b;
    return DT_OK;
}

void dt_batcher_free(dt_batcher *b) {
    if (!b) return;
    free(b->base);
    free(b->order);
    free(b->row);
    free(b);
}

static int64_t n_batches(const dt_batcher *b) {
    return (int64_t)((b->n_rows + (size_t)b->o.batch_size - 1) / (size_t)b->o.batch_size);
}

int dt_batcher_epoch_batches(dt_ctx *ctx, dt_batcher *b, uint64_t epoch, int64_t *n) {
    (void)ctx;
    plan(b, epoch);
    *n = n_batches(b);
    return DT_OK;
}

static int reserve(dt_ctx *ctx, dt_batch_buf *o, int64_t need) {
    if (need <= o->cap) return DT_OK;
    size_t bytes = (size_t)need * sizeof(int32_t);
    int32_t *p[4] = {realloc(o->input_ids, bytes), NULL, NULL, NULL};
    if (p[0]) o->input_ids = p[0];
    if (p[0] && (p[1] = realloc(o->labels, bytes))) o->labels = p[1];
    if (p[1] && (p[2] = realloc(o->pos, bytes))) o->pos = p[2];
    if (p[2] && (p[3] = realloc(o->seg_start, bytes))) o->seg_start = p[3];
    if (!p[3]) return dt_fail(ctx, DT_ENOMEM, "out of memory for a batch of %lld tokens", (long long)need);
    o->cap = need;
    return DT_OK;
}

int dt_batcher_get(dt_ctx *ctx, dt_batcher *b, uint64_t epoch, int64_t index, dt_batch_buf *o) {
    plan(b, epoch);
    int64_t nb = n_batches(b);
    if (index < 0 || index >= nb)
        return dt_fail(ctx, DT_EINPUT, "batch %lld of epoch %llu does not exist (the epoch has %lld batches)",
                       (long long)index, (unsigned long long)epoch, (long long)nb);
    size_t r0 = (size_t)index * (size_t)b->o.batch_size, r1 = r0 + (size_t)b->o.batch_size;
    if (r1 > b->n_rows) r1 = b->n_rows;
    int64_t B = (int64_t)(r1 - r0), T = 0;
    for (size_t r = r0; r < r1; r++) {
        int64_t fill = 0;
        for (size_t i = b->row[r]; i < b->row[r + 1]; i++) fill += len_of(b, b->order[i]);
        if (fill > T) T = fill;
    }
    int st = reserve(ctx, o, B * T);
    if (st) return st;
    int32_t pad = dt_dataset_pad_id(b->ds);
    o->n_trained = o->n_tokens = o->n_examples = 0;
    for (size_t r = r0; r < r1; r++) {
        int64_t base = (int64_t)(r - r0) * T, t = 0;
        int32_t *ids = o->input_ids + base, *lab = o->labels + base; // (T) this row
        int32_t *pos = o->pos + base, *seg = o->seg_start + base;    // (T) this row
        for (size_t i = b->row[r]; i < b->row[r + 1]; i++) {
            const int32_t *ei, *el;
            int64_t len = dt_dataset_example(b->ds, b->order[i], &ei, &el);
            memcpy(ids + t, ei, (size_t)len * sizeof *ids);
            memcpy(lab + t, el, (size_t)len * sizeof *lab);
            for (int64_t k = 0; k < len; k++) {
                pos[t + k] = (int32_t)k;
                seg[t + k] = (int32_t)t;
                o->n_trained += el[k] != -100;
            }
            // Unpacked: the row's first label back (counted in no n_trained; see packing.h).
            if (!b->o.packing && len > 0) lab[t] = dt_dataset_first_label(b->ds, b->order[i]);
            t += len;
            o->n_examples++;
        }
        o->n_tokens += t;
        for (int64_t k = t; k < T; k++) {
            ids[k] = pad;
            lab[k] = -100;
            pos[k] = (int32_t)(k - t);
            seg[k] = (int32_t)t;
        }
    }
    o->batch = (dt_batch){B, T, o->input_ids, o->labels, b->o.packing ? o->pos : NULL, b->o.packing ? o->seg_start : NULL};
    return DT_OK;
}

int dt_batcher_next(dt_ctx *ctx, dt_batcher *b, dt_batch_buf *o) {
    plan(b, b->st.epoch);
    if (b->st.index >= n_batches(b)) {
        b->st.epoch++;
        b->st.index = 0;
        b->st.rng = epoch_rng(b->o.seed, b->st.epoch);
    }
    int st = dt_batcher_get(ctx, b, b->st.epoch, b->st.index, o);
    if (!st) b->st.index++;
    return st;
}

dt_batcher_state dt_batcher_get_state(const dt_batcher *b) { return b->st; }

int dt_batcher_set_state(dt_ctx *ctx, dt_batcher *b, const dt_batcher_state *s) {
    if (s->rng != epoch_rng(b->o.seed, s->epoch))
        return dt_fail(ctx, DT_EINPUT, "the saved data order does not match this seed (%llu): was it saved with another seed?",
                       (unsigned long long)b->o.seed);
    int64_t nb;
    dt_batcher_epoch_batches(ctx, b, s->epoch, &nb);
    if (s->index < 0 || s->index > nb)
        return dt_fail(ctx, DT_EINPUT, "the saved data position %lld is past the end of epoch %llu (%lld batches)",
                       (long long)s->index, (unsigned long long)s->epoch, (long long)nb);
    b->st = *s;
    return DT_OK;
}

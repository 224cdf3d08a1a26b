// The data-parallel side of the trainer (see tools/train_dist.h).
#include "tools/train_dist.h"
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// What every agreement point exchanges: the same record everywhere, so a rank that failed anywhere can
// join whichever agreement the others are waiting in.
typedef struct {
    int32_t status;   // dt_status of this rank since the last agreement
    int32_t stop;     // asked to stop (SIGINT/SIGTERM)
    int64_t targets;  // trained tokens of this rank's micro-batches (step exchanges only)
    int64_t tokens;
} record;

int dt_dist_init(dt_ctx *ctx, dt_dist *d, dt_comm *comm, int accum, size_t n) {
    memset(d, 0, sizeof *d);
    d->comm = comm;
    d->accum = accum;
    d->n = n;
    d->loss = calloc((size_t)accum * (size_t)(comm->size + 1), sizeof *d->loss);
    if (comm->rank > 0) d->kept = malloc((size_t)accum * n * sizeof(float));
    if (!d->loss || (comm->rank > 0 && !d->kept)) return dt_fail(ctx, DT_ENOMEM, "out of memory (gradient buffers of %d micro-batches)", accum);
    return DT_OK;
}

void dt_dist_free(dt_dist *d) {
    free(d->kept);
    free(d->loss);
    memset(d, 0, sizeof *d);
}

int dt_dist_threads(const dt_comm *c, int threads) {
    if (threads > 0 || c->local_size <= 1) return threads;
    cpu_set_t set;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int mine = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
    if (mine < online) return mine; // bound by the launcher (mpirun binds small jobs to cores)
    int t = (int)(online / c->local_size);
    return t > 0 ? t : 1;
}

void dt_dist_step_begin(dt_dist *d) {
    d->n_kept = 0;
    d->targets = d->tokens = 0;
}

void dt_dist_keep(dt_dist *d, float *acc, const float *grads, double loss_sum, int64_t targets, int64_t tokens) {
    int k = d->n_kept++;
    d->loss[k] = loss_sum;
    d->targets += targets;
    d->tokens += tokens;
    // Rank 0's blocks come first in the order, so they fold as they come (no buffer); the others wait
    // for the sum of the ranks before them.
    if (d->comm->rank == 0) {
        if (k == 0) memcpy(acc, grads, d->n * sizeof(float));
        else dt_comm_add(acc, grads, d->n);
    } else {
        memcpy(d->kept + (size_t)k * d->n, grads, d->n * sizeof(float));
    }
}

// The exchange behind every agreement point: returns DT_OK or the lowest failing rank's status.
static int exchange(dt_ctx *ctx, dt_comm *c, record *mine, record *all) {
    int rc = c->ops->allgather(c, mine, all, sizeof *mine);
    if (rc) return dt_fail(ctx, rc, "rank %d of %d: the exchange with the other ranks failed", c->rank, c->size);
    for (int r = 0; r < c->size; r++) {
        if (!all[r].status) continue;
        c->reporter = r;
        if (r == c->rank) {
            if (c->size > 1) {
                char msg[sizeof ctx->msg];
                snprintf(msg, sizeof msg, "%s", ctx->msg);
                snprintf(ctx->msg, sizeof ctx->msg, "rank %d of %d: %.*s", r, c->size, (int)sizeof msg - 32, msg);
            }
        } else {
            dt_fail(ctx, all[r].status, "rank %d of %d failed", r, c->size);
        }
        return all[r].status;
    }
    return DT_OK;
}

int dt_dist_agree(dt_ctx *ctx, dt_comm *c, int rc) {
    if (c->size == 1) return rc;
    record mine = {rc, 0, 0, 0}, *all = calloc((size_t)c->size, sizeof *all);
    if (!all) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    rc = exchange(ctx, c, &mine, all);
    free(all);
    return rc;
}

bool dt_dist_quiet(const dt_comm *c, int rc) { return rc && c->rank != c->reporter; }

int dt_dist_same_everywhere(dt_comm *c, int rc) {
    if (rc) c->reporter = 0;
    return rc;
}

int dt_dist_step_end(dt_ctx *ctx, dt_dist *d, int rc, bool stop, float *acc, dt_dist_step *out) {
    dt_comm *c = d->comm;
    memset(out, 0, sizeof *out);
    out->stop_rank = -1;
    record mine = {rc, stop, d->targets, d->tokens}, *all = calloc((size_t)c->size, sizeof *all);
    if (!all) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (c->size == 1) all[0] = mine;
    else rc = exchange(ctx, c, &mine, all);
    for (int r = 0; r < c->size && !rc; r++) {
        out->targets += all[r].targets;
        out->tokens += all[r].tokens;
        if (all[r].stop && out->stop_rank < 0) out->stop_rank = r;
    }
    free(all);
    if (rc) return rc;
    // Every rank's micro-batch losses, in micro-batch order; summed left to right as one process does.
    double *every = d->loss + d->accum;
    if ((rc = c->ops->allgather(c, d->loss, every, (size_t)d->accum * sizeof *d->loss)))
        return dt_fail(ctx, rc, "rank %d of %d: exchanging the step's losses failed", c->rank, c->size);
    for (int k = 0; k < d->accum * c->size; k++) out->loss_sum += every[k];
    const float *local[d->accum > 0 ? d->accum : 1];
    int n_local = d->accum;
    if (c->rank == 0) { local[0] = acc; n_local = 1; } // already folded
    else for (int k = 0; k < d->accum; k++) local[k] = d->kept + (size_t)k * d->n;
    if ((rc = c->ops->ordered_sum(c, acc, d->n, local, n_local)))
        return dt_fail(ctx, rc, "rank %d of %d: the gradient sum failed", c->rank, c->size);
    // The mean over the global batch's trained tokens, as the loss is (before any clipping).
    const float denom = out->targets > 0 ? (float)out->targets : 1.0f;
#pragma omp parallel for simd schedule(static) if (d->n > (1u << 16))
    for (size_t i = 0; i < d->n; i++) acc[i] /= denom;
    return DT_OK;
}

int dt_dist_share_start(dt_ctx *ctx, dt_comm *c, dt_adapter *a, dt_optimizer *o, dt_train_state *st) {
    if (c->size == 1) return DT_OK;
    size_t states = o->state ? (o->kind == DT_OPT_ADAMW ? 2 * o->n : o->n) : 0;
    int rc = c->ops->bcast(c, a->params, a->n_params * sizeof(float), 0);
    if (!rc && states) rc = c->ops->bcast(c, o->state, states * sizeof(float), 0);
    if (!rc) rc = c->ops->bcast(c, &o->step, sizeof o->step, 0);
    if (!rc) rc = c->ops->bcast(c, st, sizeof *st, 0);
    return rc ? dt_fail(ctx, rc, "rank %d of %d: receiving the starting point from rank 0 failed", c->rank, c->size) : DT_OK;
}

void dt_dist_resume_note(dt_ctx *ctx, const dt_comm *c, const dt_train_state *st, int64_t step_micro_batches) {
    if (st->world_size > 0 && st->world_size != c->size)
        fprintf(stderr, "the checkpoint was written by %lld process%s; continuing with %d (the data position is global)\n",
                (long long)st->world_size, st->world_size == 1 ? "" : "es", c->size);
    if (st->step_micro_batches > 0 && st->step_micro_batches != step_micro_batches)
        dt_warn(ctx, "a step covered %lld micro-batches in the checkpoint's run and covers %lld now "
                "(batch_size x gradient_accumulation_steps x processes changed): the run will not match an uninterrupted one",
                (long long)st->step_micro_batches, (long long)step_micro_batches);
}

void dt_dist_range(const dt_comm *c, int64_t n, int64_t *lo, int64_t *hi) {
    int64_t per = (n + c->size - 1) / c->size;
    *lo = per * c->rank < n ? per * c->rank : n;
    *hi = per * (c->rank + 1) < n ? per * (c->rank + 1) : n;
}

int dt_dist_eval_total(dt_ctx *ctx, dt_comm *c, int rc, int64_t n_batches, const double *mine, double *sum, int64_t *n) {
    if ((rc = dt_dist_agree(ctx, c, rc))) return rc;
    int64_t per = (n_batches + c->size - 1) / c->size;
    // Each rank's slot holds `per` pairs; the last ranks' slots are padded with zeros past n_batches.
    size_t slot = (size_t)(per > 0 ? per : 1) * 2;
    double *all = calloc(slot * (size_t)c->size, sizeof *all), *pad = calloc(slot, sizeof *pad);
    if (!all || !pad) { free(all); free(pad); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    int64_t lo, hi;
    dt_dist_range(c, n_batches, &lo, &hi);
    memcpy(pad, mine, (size_t)(hi - lo) * 2 * sizeof *pad);
    rc = c->ops->allgather(c, pad, all, slot * sizeof *all);
    *sum = 0;
    *n = 0;
    for (int64_t i = 0; i < n_batches && !rc; i++) {
        *sum += all[i * 2];
        *n += (int64_t)all[i * 2 + 1];
    }
    free(all);
    free(pad);
    return rc ? dt_fail(ctx, rc, "rank %d of %d: exchanging the validation losses failed", c->rank, c->size) : DT_OK;
}

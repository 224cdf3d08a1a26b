// The data-parallel side of `deltatune train`: which micro-batches of a step this rank computes, the
// per-step exchange of gradients, losses and token counts, the agreement points where a failure on any
// rank stops every rank, and the default thread count. With one process every call is local and cheap.
//
// A step of N ranks covers accum x N micro-batches, the same micro-batches in the same order as one
// process with accum x N accumulation steps (the data position is global). Rank r computes the step's
// micro-batches [r*accum, (r+1)*accum). Each micro-batch's gradient is computed from zero and with the
// loss unnormalised; the step's gradient is their sum in micro-batch order (see dt_comm_ops.ordered_sum),
// then divided by the step's trained-token count: the same float operations in the same order for
// every N, so N ranks and one process end bit-identical.
#ifndef DT_TRAIN_DIST_H
#define DT_TRAIN_DIST_H
#include <stdint.h>
#include "optim/checkpoint.h"
#include "tools/comm.h"

typedef struct dt_dist {
    dt_comm *comm;
    int accum;          // micro-batches per rank per step
    size_t n;           // gradient floats
    float *kept;        // (accum, n) ranks > 0: each micro-batch's gradient until the ordered sum
    double *loss;       // (accum) this rank's micro-batch loss sums, then (accum x size) everyone's
    int n_kept;
    int64_t targets, tokens;
} dt_dist;

// The step's results, the same on every rank.
typedef struct dt_dist_step {
    double loss_sum;       // summed over the step's micro-batches in order
    int64_t targets;       // trained tokens of the global batch
    int64_t tokens;        // tokens of the global batch
    int stop_rank;         // lowest rank asked to stop (SIGINT/SIGTERM), or -1
} dt_dist_step;

int dt_dist_init(dt_ctx *ctx, dt_dist *d, dt_comm *comm, int accum, size_t n);
void dt_dist_free(dt_dist *d);

// Threads per process: the recipe's hardware.threads when set; else, when several ranks share this node,
// the cores this process may use split among them (a launcher that bound the process to cores already
// made the split); 0 (the library's default: every core) for a lone process.
int dt_dist_threads(const dt_comm *c, int threads);

// Global micro-batch j (0 <= j < accum x size) of a step is computed by this rank.
static inline bool dt_dist_mine(const dt_dist *d, int j) { return j / d->accum == d->comm->rank; }

void dt_dist_step_begin(dt_dist *d);
// One computed micro-batch: grads (n) its gradient from zero; rank 0 folds it into acc (n) at once,
// other ranks keep it for the ordered sum.
void dt_dist_keep(dt_dist *d, float *acc, const float *grads, double loss_sum, int64_t targets, int64_t tokens);
// The step's exchange: every rank's status (rc) and stop request first; when all are fine, the ordered
// gradient sum into acc (n), divided by the global trained-token count, and the totals into *out.
// Returns the failing rank's status when one failed.
int dt_dist_step_end(dt_ctx *ctx, dt_dist *d, int rc, bool stop, float *acc, dt_dist_step *out);

// An agreement point: every rank passes its status; all return DT_OK, or all return the status of the
// lowest failing rank. That rank's ctx->msg is prefixed with "rank R of N: " and it becomes the reporter
// (see dt_dist_quiet), so the job prints one message. A rank that fails between two agreement points
// goes on to the next one with its error instead of leaving, so no rank is left waiting.
int dt_dist_agree(dt_ctx *ctx, dt_comm *c, int rc);
// Whether this rank should exit without printing its error: only the reporter prints, rank 0 unless an
// agreement point named the failing rank. (An error every rank meets alike, such as a bad recipe, so
// is printed once, by rank 0.)
bool dt_dist_quiet(const dt_comm *c, int rc);
// A failure every rank reached on its own from the same data (a diverged loss): only rank 0 reports it.
int dt_dist_same_everywhere(dt_comm *c, int rc);

// Rank 0's starting point (the adapter's parameters, the optimizer's state and step, the data position),
// fresh or loaded from a checkpoint only rank 0 can see, to every rank.
int dt_dist_share_start(dt_ctx *ctx, dt_comm *c, dt_adapter *a, dt_optimizer *o, dt_train_state *st);
// On resume (rank 0): says so when the checkpoint was written by another number of processes, and warns
// when a step now covers another number of micro-batches (the global batch changed).
void dt_dist_resume_note(dt_ctx *ctx, const dt_comm *c, const dt_train_state *st, int64_t step_micro_batches);

// Validation batches [*lo, *hi) of n are this rank's.
void dt_dist_range(const dt_comm *c, int64_t n, int64_t *lo, int64_t *hi);
// Agreement, then every rank's per-batch (loss sum, trained tokens) pairs of its range (mine: 2 per batch
// of its range) folded in batch order into *sum and *n, the same on every rank.
int dt_dist_eval_total(dt_ctx *ctx, dt_comm *c, int rc, int64_t n_batches, const double *mine, double *sum, int64_t *n);

#endif

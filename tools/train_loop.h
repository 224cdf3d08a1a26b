// The training loop behind `deltatune train`: built from a resolved recipe, it owns the model, the
// adapter, the optimizer, the data and the graph, runs the steps, logs, evaluates, checkpoints and
// writes the final adapter. Printing is done through the callbacks the command passes in.
#ifndef DT_TRAIN_LOOP_H
#define DT_TRAIN_LOOP_H
#include <signal.h>
#include "recipes/recipe.h"
#include "tools/comm.h"

typedef struct dt_train_hooks {
    volatile sig_atomic_t *stop;  // set by SIGINT/SIGTERM: save a checkpoint and return DT_EINTERRUPTED
    bool tty;                     // progress bar on a terminal, plain lines otherwise
    int64_t stop_after;           // > 0: behave as if interrupted after this step (tests of resume)
    int fail_rank;                // with fail_step > 0: this rank's share of step fail_step fails as a bad
    int64_t fail_step;            // sequence would (tests of a rank failing mid-run; a bad id in token data
                                  // is refused when the data loads, so real data cannot do it)
    bool overwrite;               // --overwrite: a fresh run may delete an earlier run's checkpoints
    dt_comm *comm;                // the processes of the run (one, or the ranks of mpirun/srun)
} dt_train_hooks;

#define DT_EINTERRUPTED 130

int dt_train_run(dt_ctx *ctx, const dt_recipe *r, const dt_train_hooks *hooks);

#endif

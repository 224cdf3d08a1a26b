// Training checkpoints: output_dir/checkpoints/step-N/ holds the adapter in PEFT format plus
// trainer_state.safetensors: the optimizer's state block ("optimizer.state", F32) and, as string
// metadata, the step, the optimizer's step count, the data position (epoch, batch), the world size and
// micro-batches per step of the run that wrote it, the format version, and the run's identity (see
// tools/run_identity.h). Together they let a resumed run continue bit-identically. A checkpoint folder is built
// under a temporary name and renamed into place, so a half-written one never looks complete.
#ifndef DT_CHECKPOINT_H
#define DT_CHECKPOINT_H
#include <stdint.h>
#include "optim/optim.h"
#include "peft/adapter.h"

// The fingerprints of a run: a hash of its recipe settings and of its data files' bytes.
typedef struct dt_run_id {
    uint64_t recipe, data;
} dt_run_id;

typedef struct dt_train_state {
    int64_t step;        // optimizer steps done
    int64_t epoch;       // data position: epoch and the next batch within it
    int64_t batch;
    uint64_t data_seed;  // the seed the data order derives from
    dt_run_id run;       // which run wrote the checkpoint
    int64_t world_size;          // processes of the run that wrote it (0: unknown, an older checkpoint)
    int64_t step_micro_batches;  // micro-batches of one step over all processes (0: unknown)
} dt_train_state;

int dt_checkpoint_save(dt_ctx *ctx, const char *dir, const dt_adapter *a, const dt_llama *m, const dt_optimizer *o,
                       const dt_train_state *s);
// Loads into an adapter and optimizer already created with the same shapes.
int dt_checkpoint_load(dt_ctx *ctx, const char *dir, dt_adapter *a, const dt_llama *m, dt_optimizer *o,
                       dt_train_state *s);
// The checkpoint folder with the highest step under output_dir/checkpoints, into buf; 0 when found.
int dt_checkpoint_latest(const char *output_dir, char *buf, size_t n);
// Removes output_dir/checkpoints and everything in it.
int dt_checkpoint_remove_all(dt_ctx *ctx, const char *output_dir);
// Removes all but the newest `keep` checkpoints (keep <= 0 keeps all), and never step-`just_saved`.
void dt_checkpoint_prune(const char *output_dir, int keep, int64_t just_saved);

#endif

// The trainer's device: which backend a recipe's hardware section selects, the memory estimate printed
// (and enforced) before anything is loaded, and the adapter, gradients and optimizer state kept in that
// backend's memory for the whole run, copied to the host only to save or resume a checkpoint. On the
// CPU every step function here calls the host code the trainer always used (dt_optim_step, ...), so a
// CPU run is unchanged bit for bit.
#ifndef DT_TRAIN_DEVICE_H
#define DT_TRAIN_DEVICE_H
#include "autograd/graph.h"
#include "optim/optim.h"
#include "peft/adapter_device.h"
#include "recipes/recipe.h"

typedef struct dt_train_device {
    const dt_backend *be;  // the table every step runs on
    dt_adapter_dev ad;     // the adapter's device copy (nothing on the CPU)
    float *opt_state;      // device copy of the optimizer state (dt_optimizer.state's layout) or NULL
    size_t opt_floats;
    bool state_on_device;  // where the optimizer state is current
    size_t est_activations; // the estimate's activation bytes, to compare with the first step's
    bool quiet;            // prints nothing (ranks other than 0 of a data-parallel run)
} dt_train_device;

// The recipe's backend. For cuda: the CUDA table with hardware.dtype matmuls; prints the memory
// estimate and refuses (DT_EINPUT, naming the numbers) when it exceeds the device's free memory.
// quiet: print nothing (the device line, the estimate, dt_train_device_report); the refusal still comes back.
int dt_train_device_open(dt_ctx *ctx, dt_train_device *d, const dt_recipe *r, bool quiet);
// Puts the adapter and the optimizer state (both freshly created or loaded on the host) on the device.
int dt_train_device_attach(dt_ctx *ctx, dt_train_device *d, dt_adapter *a, const dt_optimizer *o);
void dt_train_device_zero_grad(dt_train_device *d, dt_adapter *a);
// Copies the device gradients of the micro-batch just run into a->grads (the data-parallel exchange
// sums host gradients); nothing on the CPU.
void dt_train_device_grads_to_host(dt_train_device *d, dt_adapter *a);
// dt_clip_grad_norm of the step's summed gradient grad (host, n_params): on the device after uploading
// it there. Returns the norm before clipping.
double dt_train_device_clip(dt_train_device *d, dt_adapter *a, float *grad, double max_norm);
// dt_optim_step with that gradient, on the parameters and state where they live.
void dt_train_device_step(dt_train_device *d, dt_adapter *a, dt_optimizer *o, float *grad, float lr);
// Copies parameters and optimizer state to the host blocks the checkpoint code reads and writes, and
// back. Bracket every save and load with them.
void dt_train_device_to_host(dt_train_device *d, dt_adapter *a, dt_optimizer *o);
void dt_train_device_to_device(dt_train_device *d, dt_adapter *a, const dt_optimizer *o);
// After a step (or loading) that returned rc: waits for the device and turns a device failure into the
// library's error. Out of device memory becomes DT_EINPUT with what was asked, what was free, and the
// last checkpoint under output_dir (left as it was: nothing is written after a failed step).
int dt_train_device_check(dt_ctx *ctx, dt_train_device *d, int rc, const char *output_dir);
// After the first step: prints the activation memory it took (arena, gradient pool, attention scratch)
// beside the estimate.
void dt_train_device_report(const dt_train_device *d, const dt_graph *g);
void dt_train_device_close(dt_train_device *d, dt_adapter *a);

// Bytes a run of this model and recipe needs on its device, in parts (see train_device.c for the model),
// with the frozen matrices taking matrix_bytes (4: f32, 2: bf16/f16) per value.
typedef struct dt_train_mem {
    size_t weights, adapter, activations, total;
} dt_train_mem;
void dt_train_mem_estimate(const dt_model_config *c, const dt_recipe *r, int matrix_bytes, dt_train_mem *m);

#endif

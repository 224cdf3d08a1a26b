// An adapter's trainable tensors in a device backend's memory. The adapter keeps its host blocks
// (a->params, a->grads), which the readers and writers (peft_io, checkpoints) use; this adds a device
// copy of both blocks with the same layout and points every a->tensors[i] (data and grad) at one side
// or the other. So a training step runs entirely on the device, and saving is "to host, save, to
// device". On the CPU backend every call here is a no-op and the tensors stay in the host blocks.
#ifndef DT_ADAPTER_DEVICE_H
#define DT_ADAPTER_DEVICE_H
#include "peft/adapter.h"

typedef struct dt_adapter_dev {
    const dt_backend *be;   // the backend holding params / grads; NULL when nothing was attached
    float *params, *grads;  // (a->n_params) each, device memory; NULL on the CPU backend
    bool on_device;         // where a->tensors point now
} dt_adapter_dev;

// Copies a's parameters to be's memory (gradients zeroed) and points a's tensors there. For the CPU
// backend only records be.
int dt_adapter_dev_attach(dt_ctx *ctx, dt_adapter_dev *d, dt_adapter *a, const dt_backend *be);
// Copies the device parameters into a->params and points a's tensors at the host blocks (to save).
void dt_adapter_dev_to_host(dt_adapter_dev *d, dt_adapter *a);
// Copies a->params to the device and points a's tensors there again (after saving or loading).
void dt_adapter_dev_to_device(dt_adapter_dev *d, dt_adapter *a);
// Zeroes the gradients where they live.
void dt_adapter_dev_zero_grad(dt_adapter_dev *d, dt_adapter *a);
// The parameter and gradient blocks the optimizer works on (device or host).
float *dt_adapter_dev_params(const dt_adapter_dev *d, dt_adapter *a);
float *dt_adapter_dev_grads(const dt_adapter_dev *d, dt_adapter *a);
// Points a's tensors back at the host blocks (parameters copied back first) and frees the device copy.
void dt_adapter_dev_release(dt_adapter_dev *d, dt_adapter *a);

#endif

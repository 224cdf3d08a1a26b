// Moves an adapter's tensors between its host blocks and a device copy (see adapter_device.h).
#include "peft/adapter_device.h"
#include <string.h>

// Points every tensor at the same offset of the given blocks; the offsets come from the blocks the
// tensors point at now (`from_params`), so both sides keep the layout dt_adapter_alloc carved.
static void repoint(dt_adapter *a, const float *from_params, float *params, float *grads, dt_device dev) {
    for (int i = 0; i < a->n_tensors; i++) {
        dt_tensor *t = &a->tensors[i];
        size_t off = (size_t)((const float *)t->data - from_params);
        t->data = params + off;
        t->grad = grads + off;
        t->device = dev;
    }
}

int dt_adapter_dev_attach(dt_ctx *ctx, dt_adapter_dev *d, dt_adapter *a, const dt_backend *be) {
    memset(d, 0, sizeof *d);
    d->be = be;
    if (be->device == DT_DEV_CPU) return DT_OK;
    size_t bytes = (a->n_params ? a->n_params : 1) * sizeof(float);
    d->params = be->alloc(be, bytes);
    d->grads = d->params ? be->alloc(be, bytes) : NULL;
    if (!d->grads) {
        if (d->params) be->free(be, d->params);
        memset(d, 0, sizeof *d);
        return dt_fail(ctx, DT_ENOMEM, "cannot allocate %zu bytes of device memory for the adapter", 2 * bytes);
    }
    be->upload(be, d->params, a->params, a->n_params * sizeof(float));
    be->zero(be, d->grads, bytes);
    repoint(a, a->params, d->params, d->grads, be->device);
    d->on_device = true;
    return DT_OK;
}

void dt_adapter_dev_to_host(dt_adapter_dev *d, dt_adapter *a) {
    if (!d->on_device) return;
    d->be->download(d->be, a->params, d->params, a->n_params * sizeof(float));
    repoint(a, d->params, a->params, a->grads, DT_DEV_CPU);
    d->on_device = false;
}

void dt_adapter_dev_to_device(dt_adapter_dev *d, dt_adapter *a) {
    if (d->on_device || !d->params) return;
    d->be->upload(d->be, d->params, a->params, a->n_params * sizeof(float));
    repoint(a, a->params, d->params, d->grads, d->be->device);
    d->on_device = true;
}

void dt_adapter_dev_zero_grad(dt_adapter_dev *d, dt_adapter *a) {
    if (d->on_device) d->be->zero(d->be, d->grads, a->n_params * sizeof(float));
    else dt_adapter_zero_grad(a);
}

float *dt_adapter_dev_params(const dt_adapter_dev *d, dt_adapter *a) { return d->on_device ? d->params : a->params; }
float *dt_adapter_dev_grads(const dt_adapter_dev *d, dt_adapter *a) { return d->on_device ? d->grads : a->grads; }

void dt_adapter_dev_release(dt_adapter_dev *d, dt_adapter *a) {
    if (!d->params) return;
    if (a) dt_adapter_dev_to_host(d, a);
    d->be->free(d->be, d->params);
    d->be->free(d->be, d->grads);
    memset(d, 0, sizeof *d);
}

// The trainer's device (see train_device.h).
#include "tools/train_device.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "autograd/cuda/cuda_backend.h"
#include "autograd/dtype.h"
#include "autograd/dtype_choice.h"
#include "models/llama_quant.h"
#include "models/weights.h"
#include "optim/checkpoint.h"

static double mib(size_t b) { return (double)b / (double)(1u << 20); }
// "12.3 MiB" below a GiB, "4.56 GiB" from there.
static const char *human(char *buf, size_t n, size_t b) {
    if (b < ((size_t)1 << 30)) snprintf(buf, n, "%.1f MiB", mib(b));
    else snprintf(buf, n, "%.2f GiB", (double)b / (double)(1u << 30));
    return buf;
}

// The estimate. Weights: every frozen tensor as the backend stores it (vectors f32, matrices in
// matrix_bytes; the linears in their block type under model.quantize; a GGUF base's block types are
// not looked at: counted as matrix_bytes, which errs high). Adapter: parameters,
// gradients and optimizer state (AdamW 2, SGD with momentum 1 per parameter), f32. Activations, for
// N = batch_size x (max_seq_len + virtual tokens) positions, in floats: what one layer's forward keeps
// for its backward (the normalised inputs 2D, q/k/v and the attention output 2qd + 2kvd, the MLP's
// gate/up/product 3I, residual sums 2D, the LoRA hiddens r per adapted module, the attention's
// log-sum-exp H) times the layers, or with activation checkpointing one (N, D) input per layer plus one
// layer recomputed; then the LM head's logits chunk (at most 13M floats, ops_loss.c) and its dx, the
// embeddings, the gradient pool's live blocks (about four of the widest (N, width) activation) and, on
// the device in 16 bits, the attention's scratch.
// It errs high: it decides whether to start at all, and a refused run costs less than one that fails
// after the first checkpoint.
void dt_train_mem_estimate(const dt_model_config *c, const dt_recipe *r, int matrix_bytes, dt_train_mem *m) {
    const double D = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, L = c->num_layers;
    const double qd = (double)c->num_heads * c->head_dim, kvd = (double)c->num_kv_heads * c->head_dim;
    const double matrices = V * D * (c->tie_word_embeddings ? 1 : 2);
    double vectors = D + L * 2 * D;
    if (c->attention_bias) vectors += L * (qd + 2 * kvd);
    if (c->qk_norm) vectors += L * 2.0 * c->head_dim;
    const double in[DT_MOD_COUNT] = {D, D, D, qd, D, D, I}, out[DT_MOD_COUNT] = {qd, kvd, kvd, D, I, I, D};
    // a linear quantized at load takes what the loader allocates for it (dt_lq_bytes: its blocks, and
    // NF4's absmax and state)
    const double mat = matrix_bytes;
    double linear = 0;
    for (int mod = 0; mod < DT_MOD_COUNT; mod++)
        linear += r->model.quantize != DT_F32
                      ? (double)dt_lq_bytes(r->model.quantize, r->model.double_quant, (int64_t)out[mod], (int64_t)in[mod])
                      : out[mod] * in[mod] * mat;
    m->weights = (size_t)(vectors * sizeof(float) + matrices * mat + L * linear);

    double adapter = 0, lora_hidden = 0, virt = 0;
    if (r->method.name == DT_METHOD_LORA) {
        double layers = r->method.layers_to_transform.n ? r->method.layers_to_transform.n : L;
        for (int mod = 0; mod < DT_MOD_COUNT; mod++) {
            bool on = r->method.target_all_linear;
            for (int i = 0; i < r->method.target_modules.n; i++)
                if (dt_module_from_name(r->method.target_modules.items[i]) == mod) on = true;
            if (!on) continue;
            adapter += layers * r->method.r * (in[mod] + out[mod]);
            lora_hidden += r->method.r;
        }
    } else if (r->method.name == DT_METHOD_PREFIX_TUNING) {
        // Per layer n key and value rows; the attention runs over them and the tokens (counted as positions).
        virt = r->method.num_virtual_tokens;
        adapter = virt * L * 2 * kvd;
    } else {
        virt = r->method.num_virtual_tokens;
        adapter = virt * D;
    }
    const double states = r->train.optimizer.name == DT_OPTIM_ADAMW ? 2 : r->train.optimizer.momentum != 0 ? 1 : 0;
    m->adapter = (size_t)(adapter * (2 + states) * sizeof(float));

    const double N = (double)r->train.batch_size * (r->data.max_seq_len + virt);
    const double layer = N * (4 * D + 2 * qd + 2 * kvd + 3 * I + lora_hidden + c->num_heads);
    double acts = r->train.activation_checkpointing ? L * N * D + layer : L * layer;
    const double chunk = V * N < (double)(13 << 20) ? V * N : fmax((double)(13 << 20), V);
    const double widest = fmax(fmax(D, I), qd + 2 * kvd);
    acts += chunk + 3 * N * D + 4 * N * widest;
    // On the device under bf16/f16, cuDNN's attention keeps one scratch block: q, k, v, o, dO and their
    // gradients in 16 bits, dq's f32 accumulator and the row sums (autograd/cuda/sdpa_cudnn.cu).
    if (r->hardware.device == DT_DEV_CUDA && mat == 2) acts += N * (2 * (qd + kvd) + qd + c->num_heads);
    // A quarter more for what the sum leaves out (rope tables, norms' rstd, token ids, the arena's
    // chunk rounding): measured on stories260K (batch 8 x 256) the first step's high-water mark was
    // 41.2 MiB against 49.5 MiB summed, but 23.6 against 21.1 checkpointed, and a device arena's
    // first step chains chunks of 16, 32, 64... MiB before it folds them into one.
    m->activations = (size_t)(1.25 * acts * sizeof(float));
    m->total = m->weights + m->adapter + m->activations + ((size_t)64 << 20); // + library workspaces
}

// Bytes per frozen matrix value the run will keep: 2 under bf16/f16, 4 under f32; under stored (and
// auto where it means stored) the file's own, read off layer 0's q_proj.
static int matrix_bytes(const dt_recipe *r, const dt_weights *w) {
    dt_dtype t = r->hardware.dtype;
    if (t == DT_DTYPE_AUTO) { // auto always resolves: bf16 where the CPU has bf16 units, else stored
        dt_ctx scratch;
        dt_ctx_init(&scratch);
        dt_dtype_resolve(&scratch, t, r->hardware.device, "hardware.dtype", &t);
    }
    if (t == DT_DTYPE_STORED) t = dt_weights_stored_type(dt_weights_find(w, "model.layers.0.self_attn.q_proj.weight"));
    return (int)dt_dtype_size(t);
}

// Prints the estimate; for cuda also checks it against the device's free memory.
static int estimate(dt_ctx *ctx, const dt_recipe *r, bool cuda, bool quiet, size_t *est_activations) {
    dt_model_config c;
    dt_weights *w = NULL;
    int rc = dt_weights_open(ctx, r->model.path, &c, &w); // the config and the file index; no weights read
    const int mb = rc ? 4 : matrix_bytes(r, w);
    dt_weights_close(w);
    if (rc) return rc;
    dt_train_mem m;
    dt_train_mem_estimate(&c, r, mb, &m);
    char act[160], b[5][32];
    snprintf(act, sizeof act, "activations %s at batch %d x %d%s", human(b[0], 32, m.activations), r->train.batch_size,
             r->data.max_seq_len, r->train.activation_checkpointing ? ", checkpointed" : "");
    if (!quiet)
        fprintf(stderr, "memory estimate: %s (weights %s, adapter + gradients + optimizer %s, %s)\n",
                human(b[1], 32, m.total), human(b[2], 32, m.weights), human(b[3], 32, m.adapter), act);
    *est_activations = m.activations;
    if (!cuda) return DT_OK;
    size_t used = 0, total = 0;
    if ((rc = dt_backend_cuda_mem_info(ctx, &used, &total))) return rc;
    const size_t free_b = total - used;
    if (m.total > free_b)
        return dt_fail(ctx, DT_EINPUT, "%s: hardware.device: cuda: this run needs about %s of device memory "
                                       "(weights %s, adapter + gradients + optimizer %s, %s) but %s has %s free of %s; "
                                       "lower train.batch_size or data.max_seq_len, or set "
                                       "train.activation_checkpointing: true",
                       r->recipe_path, human(b[1], 32, m.total), human(b[2], 32, m.weights), human(b[3], 32, m.adapter),
                       act, dt_backend_cuda_device_name(), human(b[0], 32, free_b), human(b[4], 32, total));
    return DT_OK;
}

int dt_train_device_open(dt_ctx *ctx, dt_train_device *d, const dt_recipe *r, bool quiet) {
    memset(d, 0, sizeof *d);
    d->be = dt_backend_cpu();
    d->quiet = quiet;
    if (r->hardware.device != DT_DEV_CUDA) return estimate(ctx, r, false, quiet, &d->est_activations);
    const dt_backend *be = NULL;
    int rc = dt_backend_cuda_init(ctx, r->hardware.dtype, &be);
    if (rc) return dt_prefix(ctx, rc, "%s: hardware.device: cuda: ", r->recipe_path);
    if (!quiet) fprintf(stderr, "device: %s (%s matmuls)\n", dt_backend_cuda_device_name(), dt_dtype_name(r->hardware.dtype));
    if ((rc = estimate(ctx, r, true, quiet, &d->est_activations))) return rc;
    d->be = be;
    return DT_OK;
}

int dt_train_device_attach(dt_ctx *ctx, dt_train_device *d, dt_adapter *a, const dt_optimizer *o) {
    int rc = dt_adapter_dev_attach(ctx, &d->ad, a, d->be);
    if (rc || d->be->device == DT_DEV_CPU) return rc;
    d->opt_floats = o->kind == DT_OPT_ADAMW ? 2 * o->n : o->state ? o->n : 0;
    if (d->opt_floats) {
        d->opt_state = d->be->alloc(d->be, d->opt_floats * sizeof(float));
        if (!d->opt_state)
            return dt_fail(ctx, DT_ENOMEM, "cannot allocate %zu bytes of device memory for the optimizer state",
                           d->opt_floats * sizeof(float));
        d->be->upload(d->be, d->opt_state, o->state, d->opt_floats * sizeof(float));
    }
    d->state_on_device = true;
    return DT_OK;
}

void dt_train_device_zero_grad(dt_train_device *d, dt_adapter *a) { dt_adapter_dev_zero_grad(&d->ad, a); }

void dt_train_device_grads_to_host(dt_train_device *d, dt_adapter *a) {
    if (d->ad.on_device) d->be->download(d->be, a->grads, d->ad.grads, a->n_params * sizeof(float));
}

double dt_train_device_clip(dt_train_device *d, dt_adapter *a, float *grad, double max_norm) {
    if (!d->ad.on_device) return dt_clip_grad_norm(grad, a->n_params, max_norm);
    const dt_backend *be = d->be;
    float *g = d->ad.grads;
    be->upload(be, g, grad, a->n_params * sizeof(float)); // the step's summed gradient
    // dt_clip_grad_norm's arithmetic: the norm in double, torch's max_norm / (norm + 1e-6) factor.
    double norm = sqrt(be->sumsq(be, g, (int64_t)a->n_params));
    if (max_norm > 0 && norm > max_norm) be->scale(be, g, (float)(max_norm / (norm + 1e-6)), (int64_t)a->n_params);
    return norm;
}

void dt_train_device_step(dt_train_device *d, dt_adapter *a, dt_optimizer *o, float *grad, float lr) {
    if (!d->ad.on_device) { dt_optim_step(o, a->params, grad, lr); return; }
    if (o->lr_mult) { // per-parameter learning rates (LoRA+) have no device kernel yet: one host step
        d->be->download(d->be, grad, d->ad.grads, a->n_params * sizeof(float)); // clipped on the device
        dt_train_device_to_host(d, a, o);
        dt_optim_step(o, a->params, grad, lr);
        dt_train_device_to_device(d, a, o);
        return;
    }
    o->step++;
    dt_cuda_optim_step(d->be, o, d->ad.params, d->ad.grads, d->opt_state, lr);
}

void dt_train_device_to_host(dt_train_device *d, dt_adapter *a, dt_optimizer *o) {
    dt_adapter_dev_to_host(&d->ad, a);
    if (d->state_on_device && d->opt_state) d->be->download(d->be, o->state, d->opt_state, d->opt_floats * sizeof(float));
    d->state_on_device = false;
}

void dt_train_device_to_device(dt_train_device *d, dt_adapter *a, const dt_optimizer *o) {
    if (d->be->device == DT_DEV_CPU) return;
    dt_adapter_dev_to_device(&d->ad, a);
    if (!d->state_on_device && d->opt_state) d->be->upload(d->be, d->opt_state, o->state, d->opt_floats * sizeof(float));
    d->state_on_device = true;
}

int dt_train_device_check(dt_ctx *ctx, dt_train_device *d, int rc, const char *output_dir) {
    if (d->be->device != DT_DEV_CUDA) return rc;
    dt_ctx dev;
    dt_ctx_init(&dev);
    int drc = dt_backend_cuda_check(&dev); // a recorded CUDA/cuBLAS failure explains a failed step best
    size_t asked, free_b, total;
    if (dt_backend_cuda_oom(&asked, &free_b, &total)) {
        char last[4200] = "none";
        dt_checkpoint_latest(output_dir, last, sizeof last);
        return dt_fail(ctx, DT_EINPUT, "out of device memory on %s: asked for %.1f MiB with %.1f MiB free of %.1f MiB; "
                                       "lower train.batch_size or data.max_seq_len, or set "
                                       "train.activation_checkpointing: true. The last checkpoint (%s) is intact",
                       dt_backend_cuda_device_name(), mib(asked), mib(free_b), mib(total), last);
    }
    if (drc) {
        memcpy(ctx->msg, dev.msg, sizeof ctx->msg);
        return drc;
    }
    return rc;
}

void dt_train_device_report(const dt_train_device *d, const dt_graph *g) {
    // The arena's high-water mark, not its capacity: the first chunk is at least 16 MiB, mostly never
    // touched in a small run, which made a batch-1 stories260K run report 17.5 MiB against 7.7 estimated.
    if (d->quiet) return;
    size_t used = g->arena.peak + g->pool_bytes + g->attn_scratch_bytes;
    char b[2][32];
    fprintf(stderr, "memory after the first step: activations %s (estimated %s)\n", human(b[0], 32, used),
            human(b[1], 32, d->est_activations));
}

void dt_train_device_close(dt_train_device *d, dt_adapter *a) {
    if (!d->be) return;
    if (d->opt_state) d->be->free(d->be, d->opt_state);
    dt_adapter_dev_release(&d->ad, a);
    memset(d, 0, sizeof *d);
}

// deltatune train: the loop. Deterministic for a seed: the data order derives from (seed, epoch), the
// dropout masks from (seed, step), so a run resumed from a checkpoint ends bit-identical to one that
// was never interrupted.
#include "tools/train_loop.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "datasets/tokenizer.h"
#include "models/atomic_file.h"
#include "autograd/cuda/cuda_backend.h"
#include "autograd/dtype_choice.h"
#include "models/llama.h"
#include "optim/checkpoint.h"
#include "optim/optim.h"
#include "optim/schedule.h"
#include "peft/peft_io.h"
#include "tools/base_memory.h"
#include "tools/loss_plot.h"
#include "tools/run_identity.h"
#include "tools/train_data.h"
#include "tools/train_device.h"
#include "tools/train_method.h"
#include "tools/train_progress.h"
#include "tools/cli_checks.h"
#include "tools/train_dist.h"
#include "tools/thread_env.h"

typedef struct trainer {
    const dt_recipe *r;
    dt_llama *m;
    dt_tokenizer *tok;
    dt_adapter *a;
    dt_optimizer opt;
    dt_graph g;
    dt_train_device dev; // the backend; the adapter and optimizer state in its memory
    dt_train_data data;
    dt_train_state st;
    dt_dist dp;                  // the data-parallel side: this rank's share of each step, the exchange
    float *grad;                 // (n_params) the step's summed gradient
    int64_t total, warmup, steps_per_epoch;
    FILE *metrics;
    dt_point *train_pts, *val_pts;
    size_t n_train_pts, n_val_pts, cap_train_pts, cap_val_pts;
    dt_progress prog;
    dt_thread_gov gov;           // fewer threads while other work takes the cores (thread_env.h)
} trainer;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void add_point(dt_point **v, size_t *n, size_t *cap, int64_t step, double loss) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *v = realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = (dt_point){step, loss};
}

// mkdir -p
static int make_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') { *p = 0; if (mkdir(buf, 0777) && errno != EEXIST) return -1; *p = '/'; }
    return mkdir(buf, 0777) && errno != EEXIST ? -1 : 0;
}

// The folder PEFT's AutoTokenizer can load: model.tokenizer itself, or the folder of a tokenizer file.
static void tokenizer_folder(const char *path, char *out, size_t n) {
    struct stat sb;
    snprintf(out, n, "%s", path ? path : "");
    char *slash = strrchr(out, '/');
    if (path && stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode) && slash) *slash = 0;
}

static int setup_adapter(dt_ctx *ctx, trainer *t) {
    const dt_recipe *r = t->r;
    int rc;
    if (r->method.init_from) {
        if ((rc = dt_adapter_load(ctx, r->method.init_from, t->m, &t->a))) return rc;
    } else if (r->method.name == DT_METHOD_LORA) {
        dt_lora_config lc = {.r = r->method.r, .alpha = (float)r->method.alpha, .dropout = (float)r->method.dropout,
                             .use_rslora = r->method.use_rslora, .use_dora = r->method.use_dora};
        for (int i = 0; i < DT_MOD_COUNT; i++) lc.target[i] = r->method.target_all_linear;
        for (int i = 0; i < r->method.target_modules.n; i++) {
            const char *name = r->method.target_modules.items[i];
            if (!strcmp(name, "embed_tokens")) { lc.embed_tokens = true; continue; }
            if (!strcmp(name, "lm_head")) { lc.lm_head = true; continue; }
            int mod = dt_module_from_name(name);
            if (mod < 0)
                return dt_fail(ctx, DT_EINPUT, "%s: method.target_modules: '%s' is not a module LoRA can adapt in this model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, embed_tokens, lm_head)",
                               r->recipe_path, name);
            lc.target[mod] = true;
        }
        bool *layers = NULL;
        if (r->method.layers_to_transform.n) {
            layers = calloc((size_t)t->m->cfg.num_layers, sizeof(bool));
            for (int i = 0; i < r->method.layers_to_transform.n; i++) {
                int l = r->method.layers_to_transform.items[i];
                if (l < 0 || l >= t->m->cfg.num_layers) {
                    free(layers);
                    return dt_fail(ctx, DT_EINPUT, "%s: method.layers_to_transform: layer %d does not exist (the model has %d)",
                                   r->recipe_path, l, t->m->cfg.num_layers);
                }
                layers[l] = true;
            }
        }
        lc.layers = layers;
        rc = dt_lora_create(ctx, t->m, &lc, (uint64_t)r->train.seed, &t->a);
        free(layers);
        if (rc) return rc;
    } else if (r->method.name != DT_METHOD_PROMPT_TUNING) {
        if ((rc = dt_train_method_adapter(ctx, r, t->m, &t->a))) return rc;
    } else {
        dt_prompt_config pc = {r->method.num_virtual_tokens, (dt_prompt_init)r->method.init, r->method.init_text};
        dt_ids ids = {0};
        if (pc.init == DT_PROMPT_INIT_TEXT) {
            if (!t->tok) return dt_fail(ctx, DT_EINPUT, "%s: method.init: text needs a tokenizer (model.tokenizer)", r->recipe_path);
            // PEFT tokenises the init text with the tokenizer's special tokens (BOS) included.
            if ((rc = dt_tokenizer_encode(ctx, t->tok, pc.init_text, strlen(pc.init_text), true, &ids))) return rc;
        }
        rc = dt_prompt_create(ctx, t->m, &pc, (uint64_t)r->train.seed, ids.v, (int)ids.n, &t->a);
        dt_ids_free(&ids);
        if (rc) return rc;
    }
    snprintf(t->a->base_model, sizeof t->a->base_model, "%s",
             r->model.name_or_path ? r->model.name_or_path : r->model.path);
    tokenizer_folder(r->model.tokenizer, t->a->tokenizer, sizeof t->a->tokenizer);
    return DT_OK;
}

// Mean loss over the trained tokens of the validation set (no gradients).
// Each rank evaluates its range of the batches; the per-batch sums are added in batch order.
static int evaluate(dt_ctx *ctx, trainer *t, double *loss) {
    double sum = 0;
    int64_t n = 0, nb = dt_train_data_val_batches(&t->data), lo, hi;
    dt_dist_range(t->dp.comm, nb, &lo, &hi);
    double *mine = calloc((size_t)(hi - lo) * 2 + 1, sizeof *mine); // (hi - lo, 2) loss sum, trained tokens
    bool keep = t->g.grad_enabled, train = t->g.training;
    t->g.grad_enabled = false;
    t->g.training = false;
    int rc = mine ? DT_OK : dt_fail(ctx, DT_ENOMEM, "out of memory");
    for (int64_t i = lo; i < hi && !rc; i++) {
        dt_batch b;
        if ((rc = dt_train_data_val_batch(ctx, &t->data, i, &b))) break;
        dt_graph_reset(&t->g);
        dt_llama_out out;
        if ((rc = dt_llama_forward(ctx, &t->g, t->m, &t->a->view, &b, 1.0f, false, &out))) break;
        mine[(i - lo) * 2] = out.loss_sum;
        mine[(i - lo) * 2 + 1] = (double)out.n_targets;
    }
    t->g.grad_enabled = keep;
    t->g.training = train;
    rc = dt_dist_eval_total(ctx, t->dp.comm, rc, nb, mine, &sum, &n);
    free(mine);
    *loss = n ? sum / (double)n : NAN;
    return rc;
}

// resume: PATH must name one checkpoint folder (checkpoints/step-N). Giving the run's output_dir or its
// checkpoints/ folder, the natural slips, used to fail deep in the loader ("trainer_state.safetensors:
// cannot open", "no adapter here"); this says what PATH is not, and names the newest checkpoint there.
static int check_resume_path(dt_ctx *ctx, const dt_recipe *r) {
    char p[4300], newest[4200] = "", up[4200];
    struct stat sb;
    snprintf(p, sizeof p, "%s/trainer_state.safetensors", r->resume_path);
    if (stat(p, &sb) == 0) return DT_OK;
    const char *why = stat(r->resume_path, &sb) ? (errno == ENOENT ? "it does not exist" : strerror(errno))
                      : S_ISDIR(sb.st_mode)    ? "it holds no trainer_state.safetensors"
                                               : "it is a file, not a folder";
    const char *base = strrchr(r->resume_path, '/');
    if (dt_checkpoint_latest(r->resume_path, newest, sizeof newest) && base && !strcmp(base, "/checkpoints")) {
        snprintf(up, sizeof up, "%.*s", (int)(base - r->resume_path), r->resume_path); // the output_dir above
        if (dt_checkpoint_latest(up, newest, sizeof newest)) newest[0] = 0;
    }
    return dt_fail(ctx, DT_EINPUT, "%s: resume: %s is not a checkpoint folder (%s); give a checkpoints/step-N folder%s%s, "
                   "or resume: true for the newest checkpoint in output_dir", r->recipe_path, r->resume_path, why,
                   newest[0] ? " such as " : "", newest);
}

// A checkpoint refused as another run's (rc) when the only difference is the number of micro-batches
// in a step: the usual cause is resuming with another number of processes without changing
// gradient_accumulation_steps to match. The generic "training settings differ" then becomes a message
// that says so and what to set. Any other difference keeps rc and its message.
static int explain_global_batch(dt_ctx *ctx, const dt_recipe *global, const char *ck, const dt_train_state *st,
                                int procs, int rc) {
    const int64_t was = st->step_micro_batches, now_mb = global->train.gradient_accumulation_steps;
    if (was <= 0 || was == now_mb || was > 65536 * (int64_t)procs) return rc;
    dt_recipe then = *global; // a shallow copy, as dt_run_identity needs only to read it
    then.train.gradient_accumulation_steps = (int)was;
    dt_ctx quiet;
    dt_ctx_init(&quiet);
    dt_run_id id;
    if (dt_run_identity(&quiet, &then, &id) || id.recipe != st->run.recipe || id.data != st->run.data) return rc;
    char fix[160];
    if (was % procs == 0)
        snprintf(fix, sizeof fix, "set train.gradient_accumulation_steps=%lld to continue it with %d process%s",
                 (long long)(was / procs), procs, procs == 1 ? "" : "es");
    else
        snprintf(fix, sizeof fix, "%lld is not a multiple of %d processes: continue it with a number of processes that "
                 "divides %lld", (long long)was, procs, (long long)was);
    return dt_fail(ctx, DT_EINPUT, "%s: the checkpoint's run took %lld micro-batches per step (%lld process%s x "
                   "gradient_accumulation_steps %lld) and this one takes %lld (%d x %lld): resuming must keep the global "
                   "batch; %s", ck, (long long)was, (long long)st->world_size, st->world_size == 1 ? "" : "es",
                   st->world_size > 0 ? (long long)(was / st->world_size) : 0LL, (long long)now_mb, procs,
                   (long long)(now_mb / procs), fix);
}

static int save_checkpoint(dt_ctx *ctx, trainer *t) {
    if (t->dp.comm->rank != 0) return DT_OK; // rank 0 alone writes
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/checkpoints/step-%lld", t->r->output_dir, (long long)t->st.step);
    dt_train_device_to_host(&t->dev, t->a, &t->opt);
    int rc = dt_checkpoint_save(ctx, dir, t->a, t->m, &t->opt, &t->st);
    dt_train_device_to_device(&t->dev, t->a, &t->opt);
    if (!rc) dt_checkpoint_prune(t->r->output_dir, t->r->train.keep_last_n_checkpoints, t->st.step);
    return rc;
}

// Keeps the metrics of steps up to the resumed step (a run interrupted after its last checkpoint
// logged steps that will be redone) and reloads them for the plot.
static int reload_metrics(dt_ctx *ctx, trainer *t, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return DT_OK;
    char *line = NULL, *kept = NULL;
    size_t cap = 0, klen = 0;
    FILE *out = open_memstream(&kept, &klen);
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        json_int_t step = j ? json_integer_value(json_object_get(j, "step")) : -1;
        if (j && step <= t->st.step) {
            fputs(line, out);
            json_t *l = json_object_get(j, "loss"), *v = json_object_get(j, "val_loss");
            if (json_is_number(l)) add_point(&t->train_pts, &t->n_train_pts, &t->cap_train_pts, step, json_number_value(l));
            if (json_is_number(v)) add_point(&t->val_pts, &t->n_val_pts, &t->cap_val_pts, step, json_number_value(v));
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    fclose(out);
    int rc = dt_atomic_write(ctx, path, kept, klen); // a crash here must not lose the kept lines
    free(kept);
    return rc;
}

// One micro-batch of this rank's share: global micro-batch j of the step, batch `index` of `epoch`. Its
// gradient is computed from zero with the loss summed, not averaged (the step divides by the global
// trained-token count once the micro-batches of every rank are added; see tools/train_dist.h).
static int micro_batch(dt_ctx *ctx, trainer *t, int j, int64_t epoch, int64_t index) {
    dt_batch b;
    int rc = dt_train_data_batch(ctx, &t->data, epoch, index, 0, &b);
    if (rc) return rc;
    int64_t targets = dt_count_targets(b.labels, b.B, b.T, dt_llama_out_len(&t->a->view, 0));
    dt_train_device_zero_grad(&t->dev, t->a);
    dt_graph_reset(&t->g);
    // Masks from (seed, step, micro-batch): reproducible on resume, and the same on whichever rank runs it.
    t->g.dropout_seed = ((uint64_t)t->r->train.seed * 1000003u + (uint64_t)t->st.step) * 0x9e3779b97f4a7c15ull + (uint64_t)j;
    dt_llama_out out;
    rc = dt_llama_forward(ctx, &t->g, t->m, &t->a->view, &b, 1.0f, false, &out);
    if (!rc) rc = dt_graph_backward(&t->g, out.loss, 1.0f);
    rc = dt_train_device_check(ctx, &t->dev, rc, t->r->output_dir);
    if (!rc) dt_train_device_grads_to_host(&t->dev, t->a); // the exchange sums host gradients
    if (!rc) dt_dist_keep(&t->dp, t->grad, t->a->grads, out.loss_sum, targets, b.B * b.T);
    return rc;
}

static int train_steps(dt_ctx *ctx, trainer *t, const dt_train_hooks *h) {
    const dt_recipe *r = t->r;
    dt_comm *c = t->dp.comm;
    const int global_mb = r->train.gradient_accumulation_steps * c->size; // micro-batches of a step, all ranks
    int rc = DT_OK;
    dt_progress_start(&t->prog, stderr, h->tty, t->st.step, t->total);
    int64_t first = t->st.step;
    // Ranks sharing a machine would count each other as other work: the governor is for one process.
    dt_thread_gov_init(&t->gov, c->size > 1 ? 1 : ctx->nthreads);
    while (t->st.step < t->total && !rc) {
        dt_thread_gov_tick(&t->gov);
        double t0 = now();
        dt_dist_step_begin(&t->dp);
        int mine = DT_OK; // this rank's status, told to the others at the step's exchange
        // Every rank walks the whole global batch, so the data position stays global; each computes its share.
        for (int j = 0; j < global_mb; j++) {
            int64_t in_epoch = dt_train_data_epoch_batches(ctx, &t->data, t->st.epoch);
            if (in_epoch < 0) { mine = DT_EINPUT; break; }
            if (t->st.batch >= in_epoch) { t->st.epoch++; t->st.batch = 0; }
            int64_t index = t->st.batch++;
            if (!mine && dt_dist_mine(&t->dp, j)) mine = micro_batch(ctx, t, j, t->st.epoch, index);
            if (!mine && h->fail_step == t->st.step + 1 && h->fail_rank == c->rank)
                mine = dt_fail(ctx, DT_EINPUT, "its share of step %lld failed (DT_TEST_FAIL_SHARE)", (long long)h->fail_step);
        }
        dt_dist_step sum;
        if ((rc = dt_dist_step_end(ctx, &t->dp, mine, h->stop && *h->stop, t->grad, &sum))) break;
        if (t->st.step == first) dt_train_device_report(&t->dev, &t->g);
        int64_t targets = sum.targets;
        double loss = sum.loss_sum / (targets > 0 ? (double)targets : 1.0);
        if (!isfinite(loss)) {
            char last[4200] = "none";
            dt_checkpoint_latest(r->output_dir, last, sizeof last);
            rc = dt_fail(ctx, DT_EDIVERGED, "the loss is %s at step %lld; stopping. The last good checkpoint is %s",
                         isnan(loss) ? "NaN" : "infinite", (long long)t->st.step + 1, last);
            rc = dt_dist_same_everywhere(c, rc);
            break;
        }
        double gnorm = dt_train_device_clip(&t->dev, t->a, t->grad, r->train.clip_grad_norm);
        double lr = dt_lr_at((dt_lr_kind)r->train.lr_scheduler.name, r->train.optimizer.lr, t->st.step, t->total,
                             t->warmup, r->train.lr_scheduler.min_lr_ratio);
        dt_train_device_step(&t->dev, t->a, &t->opt, t->grad, (float)lr);
        t->st.step++;
        double tps = (double)sum.tokens / (now() - t0);
        add_point(&t->train_pts, &t->n_train_pts, &t->cap_train_pts, t->st.step, loss);
        json_t *j = json_pack("{s:I,s:f,s:f,s:f,s:f,s:I}", "step", (json_int_t)t->st.step, "loss", loss, "lr", lr,
                              "grad_norm", gnorm, "tokens_per_s", tps, "trained_tokens", (json_int_t)targets);
        bool last = t->st.step == t->total, rank0 = c->rank == 0;
        if (t->data.n_val_batches && ((r->train.eval_every_n_steps && t->st.step % r->train.eval_every_n_steps == 0) || last)) {
            double vl;
            if ((rc = evaluate(ctx, t, &vl))) { json_decref(j); break; }
            json_object_set_new(j, "val_loss", json_real(vl));
            json_object_set_new(j, "val_perplexity", json_real(exp(vl)));
            add_point(&t->val_pts, &t->n_val_pts, &t->cap_val_pts, t->st.step, vl);
            if (rank0) dt_progress_val(&t->prog, t->st.step, vl);
        }
        char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8));
        if (rank0) fprintf(t->metrics, "%s\n", s);
        if (rank0) fflush(t->metrics);
        free(s);
        json_decref(j);
        if (rank0)
            dt_progress_step(&t->prog, t->st.step, loss, lr, tps, r->train.log_every_n_steps &&
                             (t->st.step % r->train.log_every_n_steps == 0 || last || t->st.step == first + 1));
        bool saved = false;
        if (r->train.save_every_n_steps && t->st.step % r->train.save_every_n_steps == 0 && !last) {
            if ((rc = dt_dist_agree(ctx, c, save_checkpoint(ctx, t)))) break;
            saved = true;
        }
        if ((sum.stop_rank >= 0 || (h->stop_after > 0 && t->st.step == h->stop_after)) && !last) {
            if (h->tty && rank0) fputc('\n', stderr);
            // Not again when this step's checkpoint was just written: a second copy of the same state only
            // doubles the time an interrupted run needs to exit (mpirun kills the ranks 1 s after a signal).
            if (!saved && (rc = dt_dist_agree(ctx, c, save_checkpoint(ctx, t)))) break;
            char by[64] = "";
            if (c->size > 1 && sum.stop_rank >= 0) snprintf(by, sizeof by, " (a signal reached rank %d)", sum.stop_rank);
            rc = dt_fail(ctx, DT_EINTERRUPTED, "interrupted at step %lld%s; checkpoint saved in %s/checkpoints/step-%lld; resume with resume: true",
                         (long long)t->st.step, by, r->output_dir, (long long)t->st.step);
            rc = dt_dist_same_everywhere(c, rc);
        }
    }
    if (h->tty && c->rank == 0) fputc('\n', stderr);
    return rc;
}

int dt_train_run(dt_ctx *ctx, const dt_recipe *r, const dt_train_hooks *h) {
    dt_comm *comm = h->comm;
    ctx->nthreads = dt_dist_threads(comm, r->hardware.threads);
    dt_ctx_apply_threads(ctx);
    trainer t = {0};
    t.r = r;
    int rc = comm->rank == 0 ? dt_check_writable_dir(ctx, r->output_dir, "output_dir") : DT_OK; // rank 0 writes
    if (rc) dt_prefix(ctx, rc, "%s: ", r->recipe_path);
    // --overwrite means "start afresh, deleting the checkpoints" and resume means "continue from one":
    // honouring either would silently ignore the other, so the pair is refused (every rank sees it).
    if (!rc && h->overwrite && r->resume != DT_RESUME_NO)
        rc = dt_fail(ctx, DT_EINPUT, "%s: resume: %s: --overwrite starts a fresh run (deleting output_dir's checkpoints), "
                     "resume continues one; give only one of them", r->recipe_path,
                     r->resume == DT_RESUME_PATH ? r->resume_path : "true");
    char what[1100], how[256];
    snprintf(what, sizeof what, "%s: hardware.dtype %s", r->recipe_path, dt_dtype_choice_name(r->hardware.dtype));
    // On a device the matrices are kept in the matmuls' 16-bit type (bf16/f16 files as stored, f32 converted).
    const bool dev16 = r->hardware.device == DT_DEV_CUDA && (r->hardware.dtype == DT_BF16 || r->hardware.dtype == DT_F16);
    const dt_load_opts lo = {.quantize = r->model.quantize, .double_quant = r->model.double_quant,
                             .wtype = dev16 ? r->hardware.dtype : DT_F32};
    if (!rc) rc = dt_train_device_open(ctx, &t.dev, r, comm->rank != 0); // rank 0 alone speaks (README)
    if (!rc && t.dev.be->device == DT_DEV_CUDA) // f32 or 16-bit matrices; ggml block types as stored or quantized at load
        rc = dt_train_device_check(ctx, &t.dev, dt_llama_load_ex(ctx, r->model.path, t.dev.be, &lo, &t.m), r->output_dir);
    else if (!rc) rc = dt_llama_load_cpu_ex(ctx, r->model.path, r->hardware.dtype, what, &lo, &t.m);
    if (!rc && comm->rank == 0) { // the first lines say which dtype and kernels the frozen weights run with
        if (t.dev.be->device == DT_DEV_CUDA) // stored as below, widened to f32 a panel at a time for cuBLAS
            snprintf(how, sizeof how, "%s on the GPU%s%s, %s matmuls", dt_dtype_name(t.m->wtype),
                     r->model.quantize != DT_F32 ? ", linears " : "", r->model.quantize != DT_F32 ? dt_dtype_name(r->model.quantize) : "",
                     dt_dtype_name(r->hardware.dtype));
        else
            dt_dtype_describe(t.m->wtype, t.m->be != dt_backend_cpu(), how, sizeof how);
        fprintf(stderr, "frozen weights: %s\n", how);
    }
    // Token-id data (format tokens, or auto on files of ids) needs no tokenizer, unless prompt tuning
    // starts from a text.
    bool need_tok = r->method.name == DT_METHOD_PROMPT_TUNING && r->method.init == DT_PT_INIT_TEXT;
    if (!rc && !need_tok) rc = dt_recipe_data_needs_tokenizer(ctx, r, &need_tok);
    if (!rc && need_tok) rc = dt_tokenizer_load(ctx, r->model.tokenizer, &t.tok);
    if (!rc && t.tok) rc = dt_check_vocab(ctx, t.tok, r->model.tokenizer, t.m->cfg.vocab_size, r->model.path);
    if (!rc && t.tok && dt_tokenizer_from_gguf(t.tok) && comm->rank == 0) // not a tokenizer.json: say which
        fprintf(stderr, "tokenizer: the tokenizer.ggml.* metadata of %s (model.tokenizer names another)\n",
                dt_tokenizer_path(t.tok));
    if (!rc) rc = setup_adapter(ctx, &t);
    // The embedding LoRA's gather/scatter runs on the host (peft/lora_embed.c): refused before anything is written.
    if (!rc && t.a->view.embed.fn && r->hardware.device != DT_DEV_CPU)
        rc = dt_fail(ctx, DT_EINPUT, "%s: hardware.device: cuda: LoRA on embed_tokens (method.target_modules) trains on the "
                     "CPU only", r->recipe_path);
    // DoRA's dropout path too (peft/dora.c).
    if (!rc && t.a->lora.use_dora && t.a->lora.dropout > 0 && r->hardware.device != DT_DEV_CPU)
        rc = dt_fail(ctx, DT_EINPUT, "%s: hardware.device: cuda: DoRA with method.dropout > 0 trains on the CPU only", r->recipe_path);
    if (!rc) rc = dt_train_data_open(ctx, &t.data, r, t.tok, &t.m->cfg);
    if (rc) goto agree;
    char summary[256];
    dt_adapter_param_summary(t.a, t.m, summary, sizeof summary);
    if (comm->rank == 0) fprintf(stderr, "%s\n", summary);
    if (comm->rank == 0) dt_print_base_memory(t.m);
    const int accum = r->train.gradient_accumulation_steps * comm->size; // micro-batches of a step, all ranks
    t.steps_per_epoch = t.data.n_batches / accum > 0 ? t.data.n_batches / accum : 1;
    t.total = r->train.max_steps > 0 ? r->train.max_steps : (int64_t)r->train.epochs * t.steps_per_epoch;
    // An epoch shorter than one step still counts as one step, which then also reads the next epoch's
    // first micro-batches: `epochs` passes would read the data more often than asked (transformers'
    // Trainer instead steps at the end of such an epoch with the micro-batches it has). Said, not changed.
    if (r->train.max_steps <= 0 && t.data.n_batches < accum && comm->rank == 0)
        dt_warn(ctx, "an epoch has %lld micro-batches (of train.batch_size %d) but a step takes %d (gradient_accumulation_steps "
                "x processes): each step reads past the end of an epoch, so train.epochs %d reads the data %.2f times; "
                "lower gradient_accumulation_steps or set train.max_steps",
                (long long)t.data.n_batches, r->train.batch_size, accum, r->train.epochs,
                (double)t.total * accum / (double)t.data.n_batches);
    t.warmup = r->train.lr_scheduler.warmup_steps >= 0 ? r->train.lr_scheduler.warmup_steps
                                                       : (int64_t)ceil(r->train.lr_scheduler.warmup_ratio * (double)t.total);
    const dt_opt_kind ok = r->train.optimizer.name == DT_OPTIM_ADAMW ? DT_OPT_ADAMW : DT_OPT_SGD;
    rc = dt_optim_init(ctx, &t.opt, ok, t.a->n_params, (float)r->train.optimizer.betas[0], (float)r->train.optimizer.betas[1],
                       (float)r->train.optimizer.eps, (float)r->train.optimizer.weight_decay, (float)r->train.optimizer.momentum);
    if (!rc) rc = dt_train_lr_mult(ctx, r, t.a, &t.opt);
    if (!rc) rc = dt_train_device_check(ctx, &t.dev, dt_train_device_attach(ctx, &t.dev, t.a, &t.opt), r->output_dir);
    if (!rc) rc = dt_graph_init(ctx, &t.g, t.m->be, 0);
    if (!rc) rc = dt_dist_init(ctx, &t.dp, comm, r->train.gradient_accumulation_steps, t.a->n_params);
    if (!rc && !(t.grad = malloc(t.a->n_params * sizeof(float)))) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (rc) goto agree;
    t.g.training = true;
    t.g.checkpoint_layers = r->train.activation_checkpointing;
    t.st.data_seed = (uint64_t)r->train.seed;
    char path[4200];
    if (comm->rank != 0) goto agree; // rank 0 alone reads checkpoints and writes outputs
    // The run is its global batch, not that batch's split among processes: a run resumed with another
    // number of processes (and accumulation steps to match) is the same run.
    dt_recipe global = *r;
    global.train.gradient_accumulation_steps = accum;
    dt_run_id id;
    if ((rc = dt_run_identity(ctx, &global, &id))) goto agree;
    t.st.run = id;
    if (r->resume == DT_RESUME_NO && (rc = dt_run_fresh_output(ctx, r->output_dir, h->overwrite))) goto agree;
    if (r->resume != DT_RESUME_NO) {
        char ck[4200];
        if (r->resume == DT_RESUME_PATH && (rc = check_resume_path(ctx, r))) goto agree;
        if (r->resume == DT_RESUME_PATH) snprintf(ck, sizeof ck, "%s", r->resume_path);
        if (r->resume == DT_RESUME_PATH || !dt_checkpoint_latest(r->output_dir, ck, sizeof ck)) {
            dt_train_device_to_host(&t.dev, t.a, &t.opt);
            if ((rc = dt_checkpoint_load(ctx, ck, t.a, t.m, &t.opt, &t.st))) goto agree;
            dt_train_device_to_device(&t.dev, t.a, &t.opt);
            if ((rc = dt_run_identity_check(ctx, ck, &id, &t.st.run))) {
                rc = explain_global_batch(ctx, &global, ck, &t.st, comm->size, rc);
                goto agree;
            }
            fprintf(stderr, "resuming from %s (step %lld)\n", ck, (long long)t.st.step);
            dt_dist_resume_note(ctx, comm, &t.st, accum);
        } else {
            fprintf(stderr, "resume: no checkpoint in %s/checkpoints; starting from the beginning\n", r->output_dir);
        }
    }
    // Created only now, after the checkpoint to resume from was read and checked: a resume that is
    // refused (a wrong path, another run's checkpoint) must leave no empty output_dir behind.
    if (make_dirs(r->output_dir)) { rc = dt_fail(ctx, DT_EIO, "%s: cannot create output_dir: %s", r->output_dir, strerror(errno)); goto agree; }
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->output_dir);
    if (t.st.step > 0) { if ((rc = reload_metrics(ctx, &t, path))) goto agree; }
    t.metrics = fopen(path, t.st.step > 0 ? "a" : "w");
    if (!t.metrics) { rc = dt_fail(ctx, DT_EIO, "%s: cannot open: %s", path, strerror(errno)); goto agree; }
    snprintf(path, sizeof path, "%s/recipe.yaml", r->output_dir);
    rc = dt_recipe_write(ctx, r, path);
agree:
    // Every rank's setup, then rank 0's starting point (fresh or resumed) to all.
    if ((rc = dt_dist_agree(ctx, comm, rc)) || (rc = dt_dist_share_start(ctx, comm, t.a, &t.opt, &t.st))) goto done;
    t.st.world_size = comm->size;
    t.st.step_micro_batches = (int64_t)r->train.gradient_accumulation_steps * comm->size;
    rc = train_steps(ctx, &t, h);
    dt_train_device_to_host(&t.dev, t.a, &t.opt);
    if (!rc) rc = dt_dist_agree(ctx, comm, comm->rank == 0 ? dt_adapter_save(ctx, t.a, t.m, r->output_dir) : DT_OK);
    if ((!rc || rc == DT_EINTERRUPTED) && comm->rank == 0) {
        snprintf(path, sizeof path, "%s/loss.svg", r->output_dir);
        dt_ctx tmp;
        dt_ctx_init(&tmp);
        dt_loss_plot_write(&tmp, path, t.train_pts, t.n_train_pts, t.val_pts, t.n_val_pts);
    }
    if (!rc && comm->rank == 0) fprintf(stderr, "done: %lld steps; adapter written to %s\n", (long long)t.st.step, r->output_dir);
    // Which attention ran on the device (cuDNN's fused kernel or the hand-written one, and why).
    if (!rc && comm->rank == 0 && t.dev.be->device == DT_DEV_CUDA)
        fprintf(stderr, "attention: %s\n", dt_backend_cuda_attention_note());
done:
    if (t.metrics) fclose(t.metrics);
    free(t.grad);
    dt_dist_free(&t.dp);
    free(t.train_pts);
    free(t.val_pts);
    dt_train_data_close(&t.data);
    dt_graph_free(&t.g);
    dt_train_device_close(&t.dev, t.a);
    dt_optim_free(&t.opt);
    dt_adapter_free(t.a);
    dt_tokenizer_free(t.tok);
    dt_llama_free(t.m);
    return rc;
}

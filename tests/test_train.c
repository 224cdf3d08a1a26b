// `deltatune train` end to end, through the binary: a tiny run writes every output; an interrupted
// run exits 130 with a checkpoint and, resumed, ends with an adapter byte-identical to the
// uninterrupted one; one SGD step from an init_from adapter equals PyTorch's (tests/golden/sgd_step); an
// init_from adapter with rank_pattern / alpha_pattern keeps them, and resumes bit-identical;
// the stories260K recipe's loss falls; a NaN loss stops the run keeping the last good checkpoint; bad data
// and an unavailable device exit 2 naming the problem.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "models/safetensors.h"
#include "tests/file_util.h"
#include "tests/golden_data.h"
#include "tests/test_util.h"

static char tmp[64];

// Runs a shell command, returns its exit status; its stderr goes to tmp/err.txt.
static int run(const char *fmt, const char *a, const char *b) {
    char cmd[4096], full[4400];
    snprintf(cmd, sizeof cmd, fmt, a ? a : "", b ? b : "");
    snprintf(full, sizeof full, "%s >%s/out.txt 2>%s/err.txt", cmd, tmp, tmp);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool file_has(const char *path, const char *needle) {
    size_t n;
    char *s = tf_slurp(path, &n);
    bool ok = s && strstr(s, needle);
    free(s);
    return ok;
}

// First and last "loss" of a metrics.jsonl.
static bool first_last_loss(const char *path, double *first, double *last) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "\"loss\":");
        if (!p) continue;
        double v = atof(p + 7);
        if (n++ == 0) *first = v;
        *last = v;
    }
    fclose(f);
    return n >= 2;
}

static void test_tiny_run_and_resume(void) {
    char a[256], b[256], p1[512], p2[512];
    snprintf(a, sizeof a, "output_dir=%s/a", tmp);
    int rc = run("./deltatune train tests/data/train/tiny.yaml %s", a, NULL);
    snprintf(p1, sizeof p1, "%s/a/adapter_model.safetensors", tmp);
    snprintf(p2, sizeof p2, "%s/a/metrics.jsonl", tmp);
    char svg[512], cfg[512], rec[512], ck[512];
    snprintf(svg, sizeof svg, "%s/a/loss.svg", tmp);
    snprintf(cfg, sizeof cfg, "%s/a/adapter_config.json", tmp);
    snprintf(rec, sizeof rec, "%s/a/recipe.yaml", tmp);
    snprintf(ck, sizeof ck, "%s/a/checkpoints/step-8/trainer_state.safetensors", tmp);
    TEST_CHECK("train_tiny_outputs", rc == 0 && access(p1, R_OK) == 0 && file_has(p2, "\"step\":12,") &&
                                         file_has(p2, "\"val_loss\"") && file_has(svg, "<svg") &&
                                         file_has(cfg, "\"peft_type\": \"LORA\"") && file_has(rec, "max_steps: 12") &&
                                         access(ck, R_OK) == 0,
               "exit %d, or an output is missing under %s/a", rc, tmp);
    snprintf(b, sizeof b, "output_dir=%s/b", tmp);
    rc = run("DT_TEST_INTERRUPT_AFTER=6 ./deltatune train tests/data/train/tiny.yaml %s", b, NULL);
    snprintf(ck, sizeof ck, "%s/b/checkpoints/step-6/adapter_model.safetensors", tmp);
    char err[512];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    TEST_CHECK("train_interrupt_exit_130", rc == 130 && access(ck, R_OK) == 0 && file_has(err, "interrupted at step 6"),
               "exit %d (want 130) or no checkpoint at step 6", rc);
    rc = run("./deltatune train tests/data/train/tiny.yaml %s resume=true", b, NULL);
    snprintf(p2, sizeof p2, "%s/b/adapter_model.safetensors", tmp);
    TEST_CHECK("train_resume_bit_identical", rc == 0 && file_has(err, "resuming from") && tf_same_file(p1, p2),
               "exit %d; the resumed run's adapter differs from the uninterrupted one", rc);
    // Activation checkpointing recomputes each layer in the backward, with the same dropout masks.
    snprintf(b, sizeof b, "output_dir=%s/c", tmp);
    rc = run("./deltatune train tests/data/train/tiny.yaml %s train.activation_checkpointing=true", b, NULL);
    snprintf(p2, sizeof p2, "%s/c/adapter_model.safetensors", tmp);
    TEST_CHECK("train_activation_checkpointing_same_adapter", rc == 0 && tf_same_file(p1, p2),
               "exit %d; the checkpointed run's adapter differs", rc);
}

static void test_sgd_init_from(void) {
    // The golden batch as a tokens file: two rows, labels with -100 where PyTorch had them.
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char data[256];
    snprintf(data, sizeof data, "%s/sgd.jsonl", tmp);
    if (golden_batch_to_jsonl(&ctx, "tests/golden/sgd_step/golden.safetensors", data, NULL)) {
        TEST_FAIL("train_sgd_step_golden", "%s", ctx.msg);
        return;
    }
    char over[1024];
    snprintf(over, sizeof over,
             "data.train=%s data.val=[] data.packing=false data.shuffle=false train.batch_size=2 "
             "train.gradient_accumulation_steps=1 train.max_steps=1 train.optimizer.name=sgd train.optimizer.lr=0.1 "
             "train.optimizer.momentum=0 train.optimizer.weight_decay=0 train.lr_scheduler.name=constant "
             "train.lr_scheduler.warmup_steps=0 train.clip_grad_norm=null method.dropout=0 "
             "method.init_from=tests/golden/sgd_step/adapter output_dir=%s/sgd train.eval_every_n_steps=0 "
             "train.save_every_n_steps=0 hardware.dtype=f32", // the exact path PyTorch's f32 is held to
             data, tmp);
    int rc = run("./deltatune train tests/data/train/tiny.yaml %s", over, NULL);
    char out[512];
    snprintf(out, sizeof out, "%s/sgd/adapter_model.safetensors", tmp);
    dt_safetensors *got = NULL, *want = NULL;
    if (rc || dt_st_open(&ctx, out, &got) || dt_st_open(&ctx, "tests/golden/sgd_step/adapter_after_sgd/adapter_model.safetensors", &want)) {
        TEST_FAIL("train_sgd_step_golden", "exit %d: %s", rc, ctx.msg);
        dt_st_close(got);
        return;
    }
    double dd = 0, rr = 0;
    size_t matched = 0;
    for (size_t i = 0; i < dt_st_count(want); i++) {
        const dt_st_tensor *w = dt_st_at(want, i), *g = dt_st_find(got, w->name);
        if (!g || g->nbytes != w->nbytes) continue;
        matched++;
        size_t n = w->nbytes / 4;
        float *x = malloc(w->nbytes), *y = malloc(w->nbytes);
        memcpy(x, g->data, w->nbytes);
        memcpy(y, w->data, w->nbytes);
        for (size_t j = 0; j < n; j++) { double d = (double)x[j] - y[j]; dd += d * d; rr += (double)y[j] * y[j]; }
        free(x);
        free(y);
    }
    double rel = sqrt(dd / (rr + 1e-30));
    TEST_CHECK("train_sgd_step_golden", matched == dt_st_count(want) && rel <= 1e-5,
               "%zu of %zu tensors matched; relative difference %.3g", matched, dt_st_count(want), rel);
    dt_st_close(got);
    dt_st_close(want);
}

// The text of `"key": {...}` in a JSON file (a flat object: up to its first '}'), into buf.
static bool json_block(const char *path, const char *key, char *buf, size_t n) {
    char *s = tf_slurp(path, NULL), head[64];
    snprintf(head, sizeof head, "\"%s\": {", key);
    const char *a = s ? strstr(s, head) : NULL, *b = a ? strchr(a, '}') : NULL;
    if (b) snprintf(buf, n, "%.*s", (int)(b - a + 1), a);
    free(s);
    return b != NULL;
}

// init_from an adapter with rank_pattern / alpha_pattern (tests/golden/rank_pattern): the adapter's
// config is used, as for any init_from (the recipe's r, alpha, dropout and targets are not), so the
// trained adapter keeps the patterns and the per-module shapes; and an interrupted run resumes
// bit-identical through checkpoints of that layout.
static void test_init_from_rank_pattern(void) {
    const char *golden = "tests/golden/rank_pattern/adapter";
    char over[1024], a[256], b[256], err[256];
    const char *common = "method.init_from=tests/golden/rank_pattern/adapter train.max_steps=4 train.save_every_n_steps=2 "
                         "train.eval_every_n_steps=0";
    snprintf(over, sizeof over, "%s output_dir=%s/rp_a", common, tmp);
    int rc = run("./deltatune train tests/data/train/tiny.yaml %s", over, NULL);
    snprintf(a, sizeof a, "%s/rp_a/adapter_config.json", tmp);
    char want[1024] = "", got[1024] = "", want_a[256] = "", got_a[256] = "";
    bool blocks = json_block("tests/golden/rank_pattern/adapter/adapter_config.json", "rank_pattern", want, sizeof want) &&
                  json_block(a, "rank_pattern", got, sizeof got) &&
                  json_block("tests/golden/rank_pattern/adapter/adapter_config.json", "alpha_pattern", want_a, sizeof want_a) &&
                  json_block(a, "alpha_pattern", got_a, sizeof got_a);
    TEST_CHECK("train_init_from_rank_pattern_config", rc == 0 && blocks && !strcmp(want, got) && !strcmp(want_a, got_a),
               "exit %d; patterns written:\n%s\n%s\nwanted:\n%s\n%s", rc, got, got_a, want, want_a);
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *x = NULL, *y = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/rp_a/adapter_model.safetensors", tmp);
    snprintf(b, sizeof b, "%s/adapter_model.safetensors", golden);
    bool shapes = !rc && !dt_st_open(&ctx, path, &x) && !dt_st_open(&ctx, b, &y) && dt_st_count(x) == dt_st_count(y);
    bool moved = false;
    for (size_t i = 0; shapes && i < dt_st_count(y); i++) {
        const dt_st_tensor *w = dt_st_at(y, i), *g = dt_st_find(x, w->name);
        shapes = g && g->ndim == 2 && g->shape[0] == w->shape[0] && g->shape[1] == w->shape[1];
        moved |= shapes && memcmp(g->data, w->data, w->nbytes) != 0;
    }
    TEST_CHECK("train_init_from_rank_pattern_shapes", shapes && moved, "tensors differ in names or shapes from %s, or none was trained (%s)",
               golden, ctx.msg);
    dt_st_close(x);
    dt_st_close(y);
    snprintf(over, sizeof over, "%s output_dir=%s/rp_b", common, tmp);
    rc = run("DT_TEST_INTERRUPT_AFTER=2 ./deltatune train tests/data/train/tiny.yaml %s", over, NULL);
    int rc2 = run("./deltatune train tests/data/train/tiny.yaml %s resume=true", over, NULL);
    snprintf(b, sizeof b, "%s/rp_b/adapter_model.safetensors", tmp);
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    TEST_CHECK("train_init_from_rank_pattern_resume", rc == 130 && rc2 == 0 && file_has(err, "resuming from") && tf_same_file(path, b),
               "exit %d then %d; the resumed run's adapter differs from the uninterrupted one", rc, rc2);
}

static void test_stories_loss_falls(void) {
    const char *fx = dt_test_fixtures();
    if (!fx) { TEST_SKIP("train_stories260k_loss_falls", "../shared/fixtures is absent"); return; }
    char over[512], metrics[512];
    snprintf(over, sizeof over, "output_dir=%s/stories train.max_steps=60 train.save_every_n_steps=0 hardware.threads=2", tmp);
    int rc = run("./deltatune train recipes/stories260k-lora.yaml %s", over, NULL);
    snprintf(metrics, sizeof metrics, "%s/stories/metrics.jsonl", tmp);
    double first = 0, last = 0;
    bool ok = first_last_loss(metrics, &first, &last);
    TEST_CHECK("train_stories260k_loss_falls", rc == 0 && ok && last < first - 1.0, "exit %d, loss %.4f -> %.4f", rc, first, last);
}

// A learning rate of 1e30 blows the adapter up: the loss of step 3 is NaN. The run must stop with exit 1
// and a message naming the step and the last good checkpoint, keep that checkpoint (finite values),
// write no checkpoint for the bad step and no final adapter.
static void test_nan_loss_stops(void) {
    char over[512], ck2[512], ck3[512], final_adapter[512], err[512];
    snprintf(over, sizeof over, "output_dir=%s/nan train.optimizer.lr=1e30 train.save_every_n_steps=1", tmp);
    int rc = run("./deltatune train tests/data/train/tiny.yaml %s", over, NULL);
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    snprintf(ck2, sizeof ck2, "%s/nan/checkpoints/step-2/adapter_model.safetensors", tmp);
    snprintf(ck3, sizeof ck3, "%s/nan/checkpoints/step-3", tmp);
    snprintf(final_adapter, sizeof final_adapter, "%s/nan/adapter_model.safetensors", tmp);
    char want[512];
    snprintf(want, sizeof want, "the loss is NaN at step 3; stopping. The last good checkpoint is %s/nan/checkpoints/step-2", tmp);
    TEST_CHECK("train_nan_loss_stops", rc == 1 && file_has(err, want), "exit %d; stderr should contain \"%s\"", rc, want);
    TEST_CHECK("train_nan_loss_keeps_last_good_checkpoint", access(ck2, R_OK) == 0 && access(ck3, F_OK) != 0 &&
               access(final_adapter, F_OK) != 0, "step-2 %s, step-3 %s, final adapter %s",
               access(ck2, R_OK) ? "missing" : "present", access(ck3, F_OK) ? "absent" : "present",
               access(final_adapter, F_OK) ? "absent" : "present");
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_safetensors *st;
    bool finite = false;
    if (!dt_st_open(&ctx, ck2, &st)) {
        finite = dt_st_count(st) > 0;
        for (size_t i = 0; i < dt_st_count(st) && finite; i++) {
            const dt_st_tensor *t = dt_st_at(st, i);
            size_t n = 1;
            for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
            float *v = malloc(n * sizeof(float));
            finite = v && !dt_st_read_f32(&ctx, st, t->name, v, t->ndim, t->shape);
            for (size_t j = 0; j < n && finite; j++) finite = isfinite(v[j]);
            free(v);
        }
        dt_st_close(st);
    }
    TEST_CHECK("train_nan_loss_checkpoint_is_finite", finite, "the step-2 checkpoint is unreadable or holds NaN/Inf");
}

static void test_bad_input(void) {
    char bad[256], over[512], err[256];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", tmp);
    FILE *f = fopen(bad, "w");
    fprintf(f, "{\"input_ids\":[1,2,3]}\n{\"input_ids\":[1,2,\"x\"]}\n");
    fclose(f);
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    snprintf(over, sizeof over, "data.train=%s output_dir=%s/bad", bad, tmp);
    int rc = run("./deltatune train tests/data/train/tiny.yaml %s", over, NULL);
    TEST_CHECK("train_bad_data_line", rc == 2 && file_has(err, "bad.jsonl:2"), "exit %d; stderr lacks bad.jsonl:2", rc);
    snprintf(over, sizeof over, "%s/bad/adapter_model.safetensors", tmp);
    TEST_CHECK("train_bad_data_writes_nothing", access(over, F_OK) != 0, "an adapter was written");
    // A token id the model has no embedding for, in token data read without a tokenizer: refused as the
    // data loads, naming the file and line, before anything is written (it used to fail at the step that
    // read it, as "token id 500 at position 53 is outside the vocabulary (128)", after writing metrics).
    f = fopen(bad, "w");
    fprintf(f, "{\"input_ids\":[1,2,3,4,5,6,7,8]}\n{\"input_ids\":[1,2,500,4,5,6,7,8]}\n");
    fclose(f);
    snprintf(over, sizeof over, "data.train=%s output_dir=%s/badvocab", bad, tmp);
    rc = run("./deltatune train tests/data/train/tiny.yaml %s", over, NULL);
    snprintf(over, sizeof over, "%s/badvocab", tmp);
    TEST_CHECK("train_token_outside_model_vocab_at_load", rc == 2 && file_has(err, "bad.jsonl:2: key 'input_ids', entry 3: 500") &&
               access(over, F_OK) != 0, "exit %d (want 2 and bad.jsonl:2 in %s), output_dir %s", rc, err,
               access(over, F_OK) ? "absent" : "created");
    snprintf(over, sizeof over, "hardware.device=cuda output_dir=%s/cuda", tmp);
    rc = run("./deltatune train tests/data/train/tiny.yaml %s", over, NULL);
    TEST_CHECK("train_cuda_unavailable", rc == 2 && file_has(err, "CUDA"), "exit %d", rc);
    rc = run("./deltatune train tests/data/train/tiny.yaml train.gradient_accumulation_step=2", NULL, NULL);
    TEST_CHECK("train_bad_override", rc == 2 && file_has(err, "did you mean"), "exit %d", rc);
}

// The memory estimate printed before loading counts linear weights quantized at load (model.quantize)
// in their block type: q8_0 takes 34 bytes per 32 values against 128.
static double estimate_weights_mib(const char *extra) {
    char out[256];
    snprintf(out, sizeof out, "%s/est", tmp);
    if (run("./deltatune train tests/data/train/tiny.yaml output_dir=%s train.max_steps=1 %s", out, extra)) return -1;
    char path[128];
    snprintf(path, sizeof path, "%s/err.txt", tmp);
    size_t n;
    char *s = tf_slurp(path, &n);
    const char *w = s ? strstr(s, "(weights ") : NULL;
    double mib = w ? atof(w + 9) : -1;
    free(s);
    snprintf(out, sizeof out, "rm -rf %s/est", tmp);
    (void)!system(out);
    return mib;
}

static void test_memory_estimate_quantized(void) {
    double f = estimate_weights_mib(""), q = estimate_weights_mib("model.quantize=q8_0");
    TEST_CHECK("train_memory_estimate_counts_quantized_weights", f > 0 && q > 0 && q < 0.5 * f,
               "weights estimated %.1f MiB with q8_0 against %.1f MiB in f32 (want under half)", q, f);
}

// train.epochs with an epoch shorter than one step (fewer micro-batches than gradient_accumulation_steps):
// each step reads into the next epoch, so the data is read more often than `epochs` says. Warned, with
// the number of passes; not warned when the epoch holds at least one step.
static void test_epoch_shorter_than_step_warns(void) {
    char a[256], err[512];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    snprintf(a, sizeof a, "output_dir=%s/ep data.val=null train.max_steps=null train.epochs=1 train.save_every_n_steps=0", tmp);
    int rc = run("./deltatune train tests/data/train/tiny.yaml %s train.gradient_accumulation_steps=64", a, NULL);
    TEST_CHECK("train_epoch_shorter_than_step_warns", rc == 0 && file_has(err, "reads past the end of an epoch") &&
               file_has(err, "train.epochs 1 reads the data"), "exit %d, or no warning in %s", rc, err);
    rc = run("./deltatune train tests/data/train/tiny.yaml %s --overwrite", a, NULL);
    TEST_CHECK("train_epoch_of_whole_steps_no_warning", rc == 0 && !file_has(err, "reads past the end of an epoch"),
               "exit %d, or a warning in %s", rc, err);
}

// A resume that is refused writes nothing: resuming from a checkpoint folder that does not exist, into
// an output_dir that does not exist yet, exits 2 without creating the output_dir (README "Exit status":
// input is checked before anything is written).
static void test_refused_resume_writes_nothing(void) {
    char a[512], err[256], out[256];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    snprintf(out, sizeof out, "%s/never", tmp);
    snprintf(a, sizeof a, "output_dir=%s resume=%s/no-such-run/checkpoints/step-4", out, tmp);
    int rc = run("./deltatune train tests/data/train/tiny.yaml %s", a, NULL);
    TEST_CHECK("train_refused_resume_writes_nothing", rc == 2 && access(out, F_OK) != 0,
               "exit %d (want 2), output_dir %s (want it not created)", rc, access(out, F_OK) ? "absent" : "created");
}

// --overwrite (start afresh, deleting the checkpoints) together with resume (continue from one) is a
// contradiction: exit 2 naming both, and the checkpoints stay.
static void test_overwrite_with_resume_refused(void) {
    char a[512], err[256], ck[256];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    snprintf(a, sizeof a, "output_dir=%s/ow train.max_steps=4 train.save_every_n_steps=2", tmp);
    int rc0 = run("./deltatune train tests/data/train/tiny.yaml %s", a, NULL);
    snprintf(ck, sizeof ck, "%s/ow/checkpoints/step-2", tmp);
    int rc = run("./deltatune train tests/data/train/tiny.yaml %s resume=true --overwrite", a, NULL);
    TEST_CHECK("train_overwrite_with_resume_refused", rc0 == 0 && rc == 2 && file_has(err, "--overwrite") &&
               file_has(err, "resume") && access(ck, F_OK) == 0,
               "first run exit %d; with resume=true --overwrite: exit %d (want 2, a message naming both, %s kept)",
               rc0, rc, ck);
    // resume given the run's output_dir instead of one of its checkpoints: exit 2, saying what it is not and
    // naming the newest checkpoint there (it used to fail with "trainer_state.safetensors: cannot open").
    char want[300];
    snprintf(want, sizeof want, "give a checkpoints/step-N folder such as %s/ow/checkpoints/step-2", tmp);
    rc = run("./deltatune train tests/data/train/tiny.yaml %s resume=%s/ow", a, tmp);
    TEST_CHECK("train_resume_output_dir_names_checkpoint", rc == 2 && file_has(err, "is not a checkpoint folder") &&
               file_has(err, want), "exit %d (want 2 and '%s' in %s)", rc, want, err);
}

// Resuming with another global batch (gradient_accumulation_steps x processes), the usual slip when the
// number of processes changes, is refused with a message that says so and what to set, not only that
// "the recipe's training settings differ". Any other change keeps the generic message.
static void test_resume_other_global_batch(void) {
    char a[512], err[256];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    snprintf(a, sizeof a, "output_dir=%s/gb train.max_steps=4 train.save_every_n_steps=2", tmp);
    int rc0 = run("./deltatune train tests/data/train/tiny.yaml %s", a, NULL); // gradient_accumulation_steps 2
    int rc = run("./deltatune train tests/data/train/tiny.yaml %s resume=true train.gradient_accumulation_steps=4", a, NULL);
    TEST_CHECK("train_resume_other_global_batch_explained", rc0 == 0 && rc == 2 &&
               file_has(err, "took 2 micro-batches per step") && file_has(err, "set train.gradient_accumulation_steps=2"),
               "first run exit %d; resumed with 4 accumulation steps: exit %d (want 2 and the global batch named in %s)",
               rc0, rc, err);
    rc = run("./deltatune train tests/data/train/tiny.yaml %s resume=true train.optimizer.lr=1e-3", a, NULL);
    TEST_CHECK("train_resume_other_setting_generic", rc == 2 && file_has(err, "training settings differ") &&
               !file_has(err, "micro-batches"), "exit %d, see %s", rc, err);
}

// keep_last_n_checkpoints after a resume from an earlier checkpoint: the first pass's later step-8 is
// still there, and pruning by step number alone deleted the checkpoint just written (step-5) while the
// interrupt message said it was saved there. The one just written stays.
static void test_prune_keeps_just_saved(void) {
    char a[512], err[256], ck[256];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    snprintf(a, sizeof a, "output_dir=%s/pk train.keep_last_n_checkpoints=2", tmp);
    int rc0 = run("./deltatune train tests/data/train/tiny.yaml %s", a, NULL); // checkpoints step-4, step-8
    snprintf(a, sizeof a, "output_dir=%s/pk train.keep_last_n_checkpoints=1 resume=%s/pk/checkpoints/step-4", tmp, tmp);
    int rc = run("DT_TEST_INTERRUPT_AFTER=5 ./deltatune train tests/data/train/tiny.yaml %s", a, NULL);
    snprintf(ck, sizeof ck, "%s/pk/checkpoints/step-5", tmp);
    TEST_CHECK("train_prune_keeps_just_saved", rc0 == 0 && rc == 130 && file_has(err, ck) && access(ck, F_OK) == 0,
               "first run exit %d; resumed from step 4, interrupted after step 5: exit %d (want 130), %s %s",
               rc0, rc, ck, access(ck, F_OK) ? "was deleted though the message names it" : "kept");
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/dt_train_XXXXXX");
    if (!mkdtemp(tmp)) { TEST_FAIL("mkdtemp", "cannot make a temporary folder"); TEST_EXIT(); }
    test_tiny_run_and_resume();
    test_sgd_init_from();
    test_init_from_rank_pattern();
    test_stories_loss_falls();
    test_nan_loss_stops();
    test_bad_input();
    test_memory_estimate_quantized();
    test_epoch_shorter_than_step_warns();
    test_refused_resume_writes_nothing();
    test_overwrite_with_resume_refused();
    test_resume_other_global_batch();
    test_prune_keeps_just_saved();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!dt_test_failures) (void)!system(cmd);
    TEST_EXIT();
}

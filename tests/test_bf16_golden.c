// bf16 against f32 on every golden case: each case's model loaded with its matrices in bf16 and run on
// the bf16 backend (oneDNN, f32 accumulation); its logits, loss and adapter gradients are compared with
// PyTorch's f32 values in the golden file, within the bounds derived here.
//
// Where the bf16 path rounds: the frozen matrices W and each bf16 matmul's f32 inputs are rounded to
// bf16 (8 significant bits: relative error at most u = 2^-8 each); the products are exact in f32 and
// summed in f32 (K 2^-24 relative, negligible beside u). One matmul output is
//     y^_j = sum_i x_i w_ij (1 + d_i)(1 + e_ij),  |d_i|, |e_ij| <= u,
// an error sum_i x_i w_ij (d_i + e_ij). Roundings of unrelated values behave as independent, zero-mean
// errors of variance ~u^2/3, so each rounded operand adds (u^2/3) sum_i (x_i w_ij)^2 to the error's
// variance: one rounding adds a relative (RMS) error of u/sqrt(3) to the matmul it feeds, and the
// roundings of a whole forward add up in quadrature.
// How much a relative error in the middle of the network moves the logits and the gradients depends on
// the model (a trained model's sharp attention and large activations amplify it; the random golden
// models barely do), so the bound is stated against a measured twin: the same model with only its
// weights rounded, computed in f32 (the CPU backend's reference path for bf16 weights). Counting
// roundings per layer on the path to the logits: four frozen matmuls (q/k/v, o, gate/up, down), each
// with a rounded weight and a rounded input, and two attention matmuls (QK^T, PV) with two rounded
// inputs each: 12 roundings of which 4 are weights; the LM head adds 2, of which 1. So the bf16 run's
// error is expected to be sqrt(12 / 4) = sqrt(3) times the weights-only twin's; we hold it to twice
// that (a 2-sigma margin for a ratio of two random norms):
//   logits and the gradients of all adapter tensors (one vector): ||e_bf16|| <= 2 sqrt(3) ||e_weights||
//   loss: |e_bf16| <= 2 sqrt(3) rms(e_weights over the logits): the mean loss moves by at most the mean
//         change of each row's log-sum-exp and target logit, each bounded by the row's logit errors.
// And, as a check on the twin itself, its logits must agree with PyTorch's to the a-priori estimate
// for rounding the weights alone, 4 sqrt(L * 4 + 1) u / sqrt(3) relative (a 4-sigma margin, with the
// model's amplification of errors taken as 1; stories260K, a trained model, amplifies about twice as
// much as the random ones and still holds it).
// The LoRA products, the norms, softmax statistics, RoPE, the loss and the optimizer are f32 on every
// side, so they add no term to the forward. The backward of a compact layer (autograd/graph.h) reads its
// saved activations (the layer's inputs, q/k/v, the attention output, gate/up) rounded to bf16: one
// rounding per saved value on the gradient's path, beside the two per matmul the bf16 backward already
// has, so the gradients' ratio grows a little (about 1.3x to 1.4x before, 1.25x to 1.7x with them) and
// stays inside the same bound.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/cpu_bf16.h"
#include "autograd/cpu_bf16_backend.h"
#include "models/llama.h"
#include "models/safetensors.h"
#include "peft/peft_io.h"
#include "tests/test_util.h"

static const double U = 1.0 / 256.0; // bf16's unit roundoff, 2^-8

static void *copy_of(const dt_safetensors *g, const char *name, dt_st_dtype want, size_t *n) {
    const dt_st_tensor *t = dt_st_find(g, name);
    if (!t || t->st_dtype != want) return NULL;
    void *p = malloc(t->nbytes);
    memcpy(p, t->data, t->nbytes); // the mapping may be unaligned
    if (n) *n = t->nbytes / 4;
    return p;
}

// What one run gives: logits (nl), loss, and every adapter gradient, concatenated in the adapter's
// order (ng), each gradient tensor followed by its PyTorch reference.
typedef struct {
    float *logits, *grads, *ref_grads;
    size_t nl, ng;
    float loss;
    int layers;
} run_out;

static void run_free(run_out *r) { free(r->logits); free(r->grads); free(r->ref_grads); }

// Loads the case's model with bf16 matrices onto be, runs forward and backward; 0, or -1 (a FAIL printed).
static int run_model(const dt_backend *be, const char *name, const char *case_dir, const char *model_path,
                     const dt_safetensors *gs, run_out *r) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char adapter_dir[1024];
    snprintf(adapter_dir, sizeof adapter_dir, "%s/adapter", case_dir);
    memset(r, 0, sizeof *r);
    dt_llama *m = NULL;
    dt_adapter *a = NULL;
    dt_graph g = {0};
    int32_t *ids = NULL, *labels = NULL, *pos = NULL, *seq = NULL, *seg = NULL;
    int rc = -1;
    if (dt_llama_load_typed(&ctx, model_path, be, DT_BF16, &m) || dt_adapter_load(&ctx, adapter_dir, m, &a)) {
        TEST_FAIL(name, "load: %s", ctx.msg);
        goto done;
    }
    const dt_st_tensor *it = dt_st_find(gs, "input_ids");
    int64_t B = it->shape[0], T = it->shape[1];
    ids = copy_of(gs, "input_ids", DT_ST_I32, NULL);
    labels = copy_of(gs, "labels", DT_ST_I32, NULL);
    pos = copy_of(gs, "position_ids", DT_ST_I32, NULL);
    seq = copy_of(gs, "seq_ids", DT_ST_I32, NULL);
    if (seq) { // first position of each example, from the per-position example ids
        seg = malloc((size_t)(B * T) * sizeof *seg);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                seg[b * T + t] = t > 0 && seq[b * T + t] == seq[b * T + t - 1] ? seg[b * T + t - 1] : (int32_t)t;
    }
    dt_batch batch = {B, T, ids, labels, pos, seg};
    dt_graph_init(&ctx, &g, be, 0);
    dt_llama_out out;
    if (dt_llama_forward(&ctx, &g, m, &a->view, &batch, 0, true, &out) || dt_graph_backward(&g, out.loss, 1.0f)) {
        TEST_FAIL(name, "forward/backward: %s", ctx.msg);
        goto done;
    }
    r->nl = (size_t)dt_numel(out.logits);
    r->logits = malloc(r->nl * sizeof(float));
    memcpy(r->logits, dt_f32(out.logits), r->nl * sizeof(float));
    r->loss = dt_f32(out.loss)[0];
    r->layers = m->cfg.num_layers;
    for (int i = 0; i < a->n_tensors; i++) r->ng += (size_t)dt_numel(&a->tensors[i]);
    r->grads = malloc(r->ng * sizeof(float));
    r->ref_grads = malloc(r->ng * sizeof(float));
    size_t off = 0;
    for (int i = 0; i < a->n_tensors; i++) {
        char gname[512];
        snprintf(gname, sizeof gname, "grad.%s", a->names[i]);
        size_t n, numel = (size_t)dt_numel(&a->tensors[i]);
        float *ref = copy_of(gs, gname, DT_ST_F32, &n);
        if (!ref || n != numel) { free(ref); TEST_FAIL(name, "golden file lacks %s", gname); goto done; }
        memcpy(r->grads + off, a->tensors[i].grad, numel * sizeof(float));
        memcpy(r->ref_grads + off, ref, numel * sizeof(float));
        free(ref);
        off += numel;
    }
    rc = 0;
done:
    free(ids); free(labels); free(pos); free(seq); free(seg);
    dt_graph_free(&g);
    dt_adapter_free(a);
    dt_llama_free(m);
    return rc;
}

// ||a - ref|| (and ||ref|| into *norm when not NULL), in double.
static double diff_norm(const float *a, const float *ref, size_t n, double *norm) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    if (norm) *norm = sqrt(r);
    return sqrt(d);
}

static void run_case(const dt_backend *bf16, const char *name, const char *case_dir, const char *model_path) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    char path[1024], label[256];
    snprintf(path, sizeof path, "%s/golden.safetensors", case_dir);
    dt_safetensors *gs = NULL;
    if (dt_st_open(&ctx, path, &gs)) { TEST_FAIL(name, "%s", ctx.msg); return; }
    size_t nl;
    float *ref_logits = copy_of(gs, "logits", DT_ST_F32, &nl), *ref_loss = copy_of(gs, "loss", DT_ST_F32, NULL);
    run_out tw, bf;
    if (!ref_logits || !ref_loss) TEST_FAIL(name, "golden file lacks logits or loss");
    else if (!run_model(dt_backend_cpu(), name, case_dir, model_path, gs, &tw)) {
        if (!run_model(bf16, name, case_dir, model_path, gs, &bf)) {
            const double C = 2.0 * sqrt(3.0);
            double lnorm, ew = diff_norm(tw.logits, ref_logits, nl, &lnorm), eb = diff_norm(bf.logits, ref_logits, nl, NULL);
            double gw = diff_norm(tw.grads, tw.ref_grads, tw.ng, NULL), gb = diff_norm(bf.grads, bf.ref_grads, bf.ng, NULL);
            double lw = fabs((double)tw.loss - ref_loss[0]), lb = fabs((double)bf.loss - ref_loss[0]);
            double rms_w = ew / sqrt((double)nl), prior = 4.0 * sqrt(4.0 * tw.layers + 1.0) * U / sqrt(3.0);
            printf("# %s: logits error bf16 %.3g, weights-only %.3g (%.2fx, bound %.2fx); gradients %.3g vs %.3g "
                   "(%.2fx); loss %.3g vs %.3g (bound %.3g); weights-only logits relative %.3g (a priori %.3g); "
                   "bf16 vs twin %.2fx\n", name, eb / lnorm, ew / lnorm, eb / ew, C, gb, gw, gb / gw, lb, lw, C * rms_w,
                   ew / lnorm, prior, diff_norm(bf.logits, tw.logits, nl, NULL) / ew);
            snprintf(label, sizeof label, "bf16 %s logits", name);
            TEST_CHECK(label, eb <= C * ew, "error %.3g > %.2f x the weights-only %.3g", eb, C, ew);
            snprintf(label, sizeof label, "bf16 %s loss", name);
            TEST_CHECK(label, lb <= C * rms_w, "error %.3g > %.2f x %.3g", lb, C, rms_w);
            snprintf(label, sizeof label, "bf16 %s adapter gradients", name);
            TEST_CHECK(label, gb <= C * gw, "error %.3g > %.2f x the weights-only %.3g", gb, C, gw);
            // The bf16 run must really round its activations (and not fall back to the twin's f32 path):
            // its 8 activation roundings per layer move the logits away from the twin by about sqrt(8/4)
            // times the twin's own error; we ask for at least half the twin's error.
            double et = diff_norm(bf.logits, tw.logits, nl, NULL);
            snprintf(label, sizeof label, "bf16 %s activations rounded", name);
            TEST_CHECK(label, et >= 0.5 * ew, "bf16 logits only %.3g from the weights-only twin's (< half of %.3g)",
                       et, ew);
            snprintf(label, sizeof label, "bf16 %s weights-only twin", name);
            TEST_CHECK(label, ew / lnorm <= prior, "logits relative error %.3g > a priori %.3g", ew / lnorm, prior);
            run_free(&bf);
        }
        run_free(&tw);
    }
    free(ref_logits);
    free(ref_loss);
    dt_st_close(gs);
}

int main(void) {
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    dt_backend *be;
    if (dt_cpu_bf16_backend_create(&ctx, &be)) { TEST_FAIL("bf16 backend", "%s", ctx.msg); TEST_EXIT(); }
    if (!dt_cpu_has_bf16())
        printf("# no bf16 matrix instructions (oneDNN ISA %s): the bf16 products run emulated (widened, sgemm)\n",
               dt_onednn_isa());
    // The cases of test_golden.c; cases reusing another case's model name it in model.txt.
    const char *dirs[] = {"llama_gqa", "qwen2_bias", "qwen3_qknorm", "llama3_rope", "prompt_tuning", "packed",
                          "rank_pattern", "rank_pattern/rslora"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char dir[512], model[512], note[600];
        snprintf(dir, sizeof dir, "tests/golden/%s", dirs[i]);
        snprintf(model, sizeof model, "%s", dir);
        snprintf(note, sizeof note, "%s/model.txt", dir);
        FILE *f = fopen(note, "r");
        if (f) {
            if (fscanf(f, "model: %511s", model) != 1) snprintf(model, sizeof model, "%s", dir);
            fclose(f);
        }
        run_case(be, dirs[i], dir, model);
    }
    const char *fx = dt_test_fixtures();
    if (!fx) {
        TEST_SKIP("bf16 stories260k", "../shared/fixtures is absent");
    } else {
        char model[1024];
        snprintf(model, sizeof model, "%s/stories260K-hf", fx);
        run_case(be, "stories260k", "tests/golden/stories260k", model);
    }
    dt_cpu_bf16_backend_free(be);
    TEST_EXIT();
}

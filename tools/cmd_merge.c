// deltatune merge --model DIR --adapter DIR[:weight] [--adapter ...] --out OUT [--dtype f32|f16|bf16|same|Q]
//                 [--format hf|gguf] [--tokenizer DIR]
// Q: a ggml type (q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K) for a GGUF output; same: each tensor
// re-quantized to its input type. Every re-quantized tensor's error is printed (RMS of the difference to
// the exact merged weights, relative to their RMS), then the overall one.
// Folds LoRA adapters into the base weights: W + sum_i weight_i * scale_i * B_i A_i. OUT is a new folder
// (hf) or a .gguf file (gguf). With no adapter the model is only converted.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/quant.h"
#include "peft/merge.h"
#include "tools/commands.h"

#define MAX_ADAPTERS 64

static int usage(void) {
    fprintf(stderr, "usage: deltatune merge --model DIR --adapter DIR[:weight] [--adapter ...] --out OUT\n"
                    "                       [--dtype f32|f16|bf16|same|q8_0|q4_0|q4_1|q5_0|q5_1|q4_K|q5_K|q6_K]\n"
                    "                       [--format hf|gguf] [--tokenizer DIR]\n");
    return 2;
}

// "DIR:0.5" -> (DIR, 0.5); a suffix that is not a whole number stays part of the folder name.
static void parse_adapter(char *arg, dt_merge_adapter *a) {
    a->dir = arg;
    a->weight = 1.0f;
    char *colon = strrchr(arg, ':');
    if (!colon || colon == arg || !colon[1]) return;
    char *end;
    float w = strtof(colon + 1, &end);
    if (*end) return;
    *colon = '\0';
    a->weight = w;
}

int cmd_merge(int argc, char **argv) {
    dt_merge_opts o = {.dtype = -1, .format = DT_MERGE_HF};
    dt_merge_adapter ad[MAX_ADAPTERS];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "deltatune merge: unknown or incomplete option '%s'\n", a); return usage(); }
        i++;
        if (!strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--tokenizer")) o.tokenizer = v;
        else if (!strcmp(a, "--adapter")) {
            if (o.n_adapters == MAX_ADAPTERS) { fprintf(stderr, "deltatune merge: at most %d adapters\n", MAX_ADAPTERS); return 2; }
            parse_adapter(v, &ad[o.n_adapters++]);
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32")) o.dtype = DT_F32;
            else if (!strcmp(v, "f16")) o.dtype = DT_F16;
            else if (!strcmp(v, "bf16")) o.dtype = DT_BF16;
            else if (!strcmp(v, "same")) o.dtype = DT_MERGE_DTYPE_SAME;
            else if (dt_quant_from_name(v) >= 0 && dt_quant_from_name(v) != DT_NF4 && dt_quant_from_name(v) != DT_FP4)
                o.dtype = dt_quant_from_name(v);
            else {
                fprintf(stderr, "deltatune merge: --dtype '%s': expected f32, f16, bf16, same or a ggml type (q8_0, q4_0, "
                                "q4_1, q5_0, q5_1, q4_K, q5_K, q6_K)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--format")) {
            if (!strcmp(v, "hf")) o.format = DT_MERGE_HF;
            else if (!strcmp(v, "gguf")) o.format = DT_MERGE_GGUF;
            else { fprintf(stderr, "deltatune merge: --format '%s': expected hf or gguf\n", v); return 2; }
        } else { fprintf(stderr, "deltatune merge: unknown option '%s'\n", a); return usage(); }
    }
    if (!o.model || !o.out) return usage();
    o.adapters = ad;
    dt_merge_report report;
    o.report = &report;
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    ctx.warn = dt_cli_warn;
    int rc = dt_merge(&ctx, &o);
    if (rc) { free(report.t); return dt_cli_fail("merge", &ctx, rc); }
    double e2 = 0, r2 = 0;
    for (size_t i = 0; i < report.n; i++) {
        const dt_merge_quant_err *e = &report.t[i];
        printf("re-quantized %-40s %-5s rms error %.6e of the weights' rms\n", e->name, dt_dtype_name(e->type),
               e->ref2 > 0 ? sqrt(e->err2 / e->ref2) : 0.0);
        e2 += e->err2;
        r2 += e->ref2;
    }
    if (report.n) printf("re-quantization error overall: %.6e (%zu tensors)\n", r2 > 0 ? sqrt(e2 / r2) : 0.0, report.n);
    free(report.t);
    printf("wrote %s (%d adapter%s merged)\n", o.out, o.n_adapters, o.n_adapters == 1 ? "" : "s");
    return 0;
}

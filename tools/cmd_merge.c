// deltatune merge --model PATH --adapter DIR[:weight] [--adapter ...] --out OUT [options: merge --help]
// --dtype: f32/f16/bf16; for a GGUF output also a ggml type (q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K),
// or same: each tensor re-quantized to its input type. Every re-quantized tensor's error is printed (RMS of
// the difference to the exact merged weights, relative to their RMS), then the overall one.
// Folds LoRA adapters into the base weights: W + sum_i weight_i * scale_i * B_i A_i. OUT is a new folder
// (hf) or a .gguf file (gguf). With no adapter the model is only converted.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/quant.h"
#include "peft/merge.h"
#include "tools/cli_opts.h"
#include "tools/commands.h"

#define MAX_ADAPTERS 64

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
    const char *adapters[MAX_ADAPTERS], *dtype = NULL, *format = "hf";
    int n_ad = 0;
    const dt_opt opts[] = {
        DT_O_STR("--model", "PATH", "the base model: a Hugging Face folder, a llama.cpp .gguf or a llama2.c .bin file", &o.model),
        DT_O_LIST("--adapter", "DIR[:WEIGHT]", "a LoRA adapter to fold in, at WEIGHT (default 1)", adapters, &n_ad, MAX_ADAPTERS),
        DT_O_STR("--out", "OUT", "a folder that must not exist yet (hf) or a .gguf file (gguf)", &o.out),
        DT_O_CHOICE("--dtype", "f32|f16|bf16|same|q8_0|q4_0|q4_1|q5_0|q5_1|q4_K|q5_K|q6_K",
                    "the merged weights' type (default: the base's); gguf: also a ggml type, or same: each tensor's own", &dtype),
        DT_O_CHOICE("--format", "hf|gguf", "a Hugging Face folder (default) or one GGUF file", &format),
        DT_O_STR("--tokenizer", "PATH", "the tokenizer folder for the output: gguf: written into the file; hf: its files copied "
                 "(default: the model's folder; a GGUF base's own tokenizer)", &o.tokenizer),
    };
    const dt_cli cli = {"merge", "--model PATH --adapter DIR[:WEIGHT] [--adapter ...] --out OUT [options]",
                        "Folds LoRA adapters into the base weights: W + sum_i weight_i * scale_i * B_i A_i, tensor by tensor.\n"
                        "With no adapter the model is only converted.",
                        opts, (int)(sizeof opts / sizeof opts[0]), NULL};
    int st = dt_cli_parse(&cli, argc, argv, NULL, NULL, 0);
    if (st >= 0) return st;
    if (!o.model || !o.out) return dt_cli_bad(&cli, "--model and --out are required");
    dt_merge_adapter ad[MAX_ADAPTERS];
    for (int i = 0; i < n_ad; i++) parse_adapter((char *)adapters[i], &ad[i]);
    o.n_adapters = n_ad;
    if (dtype) o.dtype = !strcmp(dtype, "f32") ? DT_F32 : !strcmp(dtype, "f16") ? DT_F16 : !strcmp(dtype, "bf16") ? DT_BF16
                       : !strcmp(dtype, "same") ? DT_MERGE_DTYPE_SAME : dt_quant_from_name(dtype);
    o.format = !strcmp(format, "gguf") ? DT_MERGE_GGUF : DT_MERGE_HF;
    o.adapters = ad;
    dt_merge_report report;
    o.report = &report;
    dt_ctx ctx;
    dt_cli_ctx_init(&ctx);
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

// deltatune eval --model DIR [--adapter DIR] --data FILE [--format F] [--tokenizer DIR] [--max-seq-len N] [--json]
//                [--device cpu|cuda]
// Mean loss over the trained tokens of a data file (same formats and masking as training) and its
// perplexity. The mean is over tokens, not examples, as Hugging Face's loss over one long batch.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "datasets/dataset.h"
#include "peft/adapter_device.h"
#include "peft/peft_io.h"
#include "tools/cli_device.h"
#include "tools/commands.h"

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *data = NULL, *format = "auto", *tokdir = NULL, *device = NULL;
    int64_t max_len = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--model") && has) model = argv[++i];
        else if (!strcmp(a, "--adapter") && has) adapter = argv[++i];
        else if (!strcmp(a, "--data") && has) data = argv[++i];
        else if (!strcmp(a, "--format") && has) format = argv[++i];
        else if (!strcmp(a, "--tokenizer") && has) tokdir = argv[++i];
        else if (!strcmp(a, "--max-seq-len") && has) max_len = atoll(argv[++i]);
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--device") && has) device = argv[++i];
        else {
            fprintf(stderr, "deltatune eval: unknown or incomplete option '%s'\n"
                            "usage: deltatune eval --model DIR [--adapter DIR] --data FILE [--format F] [--tokenizer DIR] [--max-seq-len N] [--json]\n"
                            "                      [--device cpu|cuda]\n", a);
            return 2;
        }
    }
    if (!model || !data) { fprintf(stderr, "deltatune eval: --model and --data are required\n"); return 2; }
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    ctx.warn = dt_cli_warn;
    dt_llama *m = NULL;
    dt_adapter *ad = NULL;
    dt_tokenizer *tok = NULL;
    dt_dataset *ds = NULL;
    dt_graph g = {0};
    dt_adapter_dev dev = {0};
    const dt_backend *be = NULL;
    int rc = dt_cli_backend(&ctx, device, &be);
    if (!rc) rc = dt_cli_backend_check(&ctx, be, dt_llama_load(&ctx, model, be, &m));
    if (!rc && adapter) rc = dt_adapter_load(&ctx, adapter, m, &ad);
    if (!rc && ad) rc = dt_cli_backend_check(&ctx, be, dt_adapter_dev_attach(&ctx, &dev, ad, be));
    if (!rc && strcmp(format, "tokens")) rc = dt_tokenizer_load(&ctx, tokdir ? tokdir : model, &tok);
    dt_dataset_opts o = {format, "auto", false, false, max_len};
    if (!rc) rc = dt_dataset_load(&ctx, (const char *const[]){data}, 1, tok, &o, &ds);
    if (!rc) rc = dt_graph_init(&ctx, &g, m->be, 0);
    double sum = 0;
    int64_t n = 0;
    g.grad_enabled = false;
    for (size_t i = 0; !rc && i < dt_dataset_size(ds); i++) {
        const int32_t *ids, *labels;
        int64_t len = dt_dataset_example(ds, i, &ids, &labels);
        dt_batch b = {1, len, ids, labels, NULL, NULL};
        dt_llama_out out;
        dt_graph_reset(&g);
        rc = dt_llama_forward(&ctx, &g, m, ad ? &ad->view : NULL, &b, 1.0f, false, &out);
        sum += out.loss_sum;
        n += out.n_targets;
    }
    if (be) rc = dt_cli_backend_check(&ctx, be, rc);
    if (!rc && n == 0) rc = dt_fail(&ctx, DT_EINPUT, "%s: no trained tokens to evaluate", data);
    if (!rc) {
        double loss = sum / (double)n;
        if (json) printf("{\"loss\": %.8g, \"perplexity\": %.8g, \"tokens\": %lld}\n", loss, exp(loss), (long long)n);
        else printf("loss %.6f  perplexity %.4f  over %lld trained tokens\n", loss, exp(loss), (long long)n);
    }
    dt_graph_free(&g);
    dt_dataset_free(ds);
    dt_tokenizer_free(tok);
    dt_adapter_dev_release(&dev, ad);
    dt_adapter_free(ad);
    dt_llama_free(m);
    return rc ? dt_cli_fail("eval", &ctx, rc) : 0;
}

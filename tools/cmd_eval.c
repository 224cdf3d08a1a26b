// deltatune eval --model PATH --data FILE [--adapter DIR] [--dtype auto|stored|f32|bf16|f16] [options]  (options: cmd_eval --help)
// Mean loss over the trained tokens of a data file (same formats and masking as training) and its
// perplexity. The mean is over tokens, not examples, as Hugging Face's loss over one long batch.
// Examples are packed, in file order, into rows of EVAL_ROW_TOKENS (or the longest example) with their
// positions restarting and attention kept inside each (as training's data.packing): the loss of every
// token is the one it has alone, and short examples (chat turns) no longer make short, slow matmuls.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "autograd/dtype_choice.h"
#include "datasets/dataset.h"
#include "datasets/packing.h"
#include "models/model_files.h"
#include "peft/adapter_device.h"
#include "peft/peft_io.h"
#include "tools/cli_checks.h"
#include "tools/cli_device.h"
#include "tools/cli_opts.h"
#include "tools/commands.h"
#include "tools/thread_env.h"

// Long enough that the frozen matmuls run at full speed, short enough that a row's activations stay small.
#define EVAL_ROW_TOKENS 512

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *data = NULL, *format = "auto", *tokdir = NULL, *device = NULL;
    int64_t max_len = 0;
    bool json = false;
    const char *dtype_s = "auto";
    dt_dtype dtype = DT_DTYPE_AUTO; // of the frozen weights: bf16 where the CPU has bf16 units, else stored
    const dt_opt opts[] = {
        DT_O_STR("--model", "PATH", "a Hugging Face model folder (config.json + safetensors), a .safetensors file with config.json beside it, a llama.cpp .gguf or a llama2.c .bin file", &model),
        DT_O_STR("--adapter", "DIR", "a PEFT adapter folder to apply (LoRA, DoRA, IA3, prompt or prefix tuning, bottleneck)", &adapter),
        DT_O_STR("--data", "FILE", "a JSONL file (plain or .gz) in any training format", &data),
        DT_O_CHOICE("--format", "auto|text|completion|alpaca|chat|sharegpt|tokens", "the data's format (default: auto, from the first record)", &format),
        DT_O_STR("--tokenizer", "PATH", "tokenizer folder or file (default: beside the model, or a .gguf model's own tokenizer.ggml.* metadata; token-id data needs none)", &tokdir),
        DT_O_INT("--max-seq-len", "N", "cut longer examples to N tokens (default 0: no limit)", &max_len, 0, 1e9),
        DT_O_FLAG("--json", "print one JSON object instead of text", &json),
        DT_O_CHOICE("--device", "cpu|cuda", "where the model runs (default cpu; cuda computes in f32)", &device),
        DT_O_CHOICE("--dtype", "auto|stored|f32|bf16|f16", "the frozen weights' dtype (default auto: bf16 where the CPU has bf16 matrix instructions, else stored: bf16/f16 matrices kept as the file has them, computed in f32)", &dtype_s),
    };
    const dt_cli cli = {"eval", "--model PATH --data FILE [--adapter DIR] [options]",
                        "Mean loss over the trained tokens of a data file (the same formats and masking as training) and its perplexity.",
                        opts, (int)(sizeof opts / sizeof opts[0]), NULL};
    int st = dt_cli_parse(&cli, argc, argv, NULL, NULL, 0);
    if (st >= 0) return st;
    if (!model || !data) return dt_cli_bad(&cli, "--model and --data are required");
    dt_dtype_choice_parse(dtype_s, &dtype); // one of the choices the table accepted
    dt_ctx ctx;
    dt_cli_ctx_init(&ctx);
    dt_llama *m = NULL;
    dt_adapter *ad = NULL;
    dt_tokenizer *tok = NULL;
    dt_dataset *ds = NULL;
    dt_batcher *bt = NULL;
    dt_batch_buf bb = {0};
    dt_graph g = {0};
    dt_adapter_dev dev = {0};
    const dt_backend *be = NULL;
    // Token-id data needs no tokenizer; others find it as train does (beside a model file).
    dt_rec_format fmt;
    char *tpath = tokdir ? strdup(tokdir) : dt_model_tokenizer_path(model);
    // A missing model is named as such, not as a missing tokenizer (which is looked for first, beside it).
    int rc = !tpath ? dt_fail(&ctx, DT_ENOMEM, "out of memory")
             : access(model, F_OK) ? dt_fail(&ctx, DT_EINPUT, "--model %s: no such model file or folder", model)
                                   : dt_data_format_of(&ctx, data, format, &fmt);
    if (!rc && fmt != DT_FMT_TOKENS) rc = dt_tokenizer_load(&ctx, tpath, &tok);
    if (!rc && tok) rc = dt_check_vocab_of(&ctx, tok, tpath, model);
    free(tpath);
    if (!rc) rc = dt_cli_backend(&ctx, device, dtype, &be);
    if (!rc && be->device == DT_DEV_CUDA) // f32 weights on the device
        rc = dt_cli_backend_check(&ctx, be, dt_llama_load(&ctx, model, be, &m));
    else if (!rc) rc = dt_llama_load_cpu(&ctx, model, dtype, "--dtype", &m);
    if (!rc && adapter) rc = dt_adapter_load(&ctx, adapter, m, &ad);
    if (!rc && ad) rc = dt_cli_backend_check(&ctx, be, dt_adapter_dev_attach(&ctx, &dev, ad, be));
    dt_dataset_opts o = {format, "auto", false, false, max_len, m ? (int32_t)m->cfg.vocab_size : 0}; // as train checks ids
    if (!rc) rc = dt_dataset_load(&ctx, (const char *const[]){data}, 1, tok, &o, &ds);
    if (!rc) {
        // Prompt tuning's virtual tokens go in front of a row, not of each example: one example a row then,
        // unpacked rows holding each example's first label, which the last virtual token predicts (packing.h).
        int64_t longest = dt_dataset_get_stats(ds)->max_len;
        dt_batcher_opts bo = {.batch_size = 1, .packing = !(ad && ad->view.prompt),
                              .row_len = longest > EVAL_ROW_TOKENS ? longest : EVAL_ROW_TOKENS};
        rc = dt_batcher_create(&ctx, ds, NULL, 0, &bo, &bt);
    }
    if (!rc) rc = dt_graph_init(&ctx, &g, m->be, 0);
    int64_t nb = 0;
    if (!rc) rc = dt_batcher_epoch_batches(&ctx, bt, 0, &nb);
    double sum = 0;
    int64_t n = 0;
    g.grad_enabled = false;
    dt_thread_gov gov;
    dt_thread_gov_init(&gov, 0);
    for (int64_t i = 0; !rc && i < nb; i++) {
        dt_thread_gov_tick(&gov);
        rc = dt_batcher_get(&ctx, bt, 0, i, &bb);
        dt_llama_out out;
        dt_graph_reset(&g);
        if (!rc) rc = dt_llama_forward(&ctx, &g, m, ad ? &ad->view : NULL, &bb.batch, 1.0f, false, &out);
        if (!rc) {
            sum += out.loss_sum;
            n += out.n_targets;
        }
    }
    if (be) rc = dt_cli_backend_check(&ctx, be, rc);
    if (!rc && n == 0) rc = dt_fail(&ctx, DT_EINPUT, "%s: no trained tokens to evaluate", data);
    if (!rc) {
        double loss = sum / (double)n;
        if (json) printf("{\"loss\": %.8g, \"perplexity\": %.8g, \"tokens\": %lld}\n", loss, exp(loss), (long long)n);
        else printf("loss %.6f  perplexity %.4f  over %lld trained tokens\n", loss, exp(loss), (long long)n);
    }
    dt_graph_free(&g);
    dt_batch_buf_free(&bb);
    dt_batcher_free(bt);
    dt_dataset_free(ds);
    dt_tokenizer_free(tok);
    dt_adapter_dev_release(&dev, ad);
    dt_adapter_free(ad);
    dt_llama_free(m);
    return rc ? dt_cli_fail("eval", &ctx, rc) : 0;
}

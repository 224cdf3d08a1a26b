// deltatune generate --model PATH (--prompt TEXT | --chat) [--device cpu|cuda] [--dtype auto|stored|f32|bf16|f16] [options: generate --help]
// Streams text with a KV cache; adapters are applied unmerged (several LoRA adapters add up; at most
// one prompt-tuning adapter). At temperature 0 the choice is greedy. Sampling, streaming and the chat
// turns are in gen_session.c.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "autograd/dtype_choice.h"
#include "datasets/tokenizer.h"
#include "models/llama_infer.h"
#include "models/model_files.h"
#include "peft/adapter_device.h"
#include "peft/peft_io.h"
#include "tools/cli_device.h"
#include "tools/cli_checks.h"
#include "tools/cli_opts.h"
#include "tools/commands.h"
#include "tools/gen_session.h"

#define MAX_ADAPTERS 16

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *tokdir = NULL, *prompt = NULL, *system = NULL, *adapters[MAX_ADAPTERS], *device = NULL;
    int n_ad = 0;
    int64_t n_new = 128, seed = 0;
    double temp = 0.0, top_p = 1.0;
    bool chat = false;
    const char *dtype_s = "auto";
    dt_dtype dtype = DT_DTYPE_AUTO; // of the frozen weights: bf16 where the CPU has bf16 units, else stored
    const dt_opt opts[] = {
        DT_O_STR("--model", "PATH", "a Hugging Face model folder (config.json + safetensors), a .safetensors file with config.json beside it, a llama.cpp .gguf or a llama2.c .bin file", &model),
        DT_O_LIST("--adapter", "DIR", "a PEFT adapter to apply unmerged (LoRA adapters add up; one prompt-tuning adapter at most)", adapters, &n_ad, MAX_ADAPTERS),
        DT_O_STR("--tokenizer", "PATH", "tokenizer folder or file (default: the model's folder, or a .gguf model's own tokenizer.ggml.* metadata)", &tokdir),
        DT_O_STR("--prompt", "TEXT", "the text to continue (with --chat: the user's message)", &prompt),
        DT_O_FLAG("--chat", "use the tokenizer's chat template and print only the reply; without --prompt, chat interactively (one message per line of stdin, an empty line ends)", &chat),
        DT_O_STR("--system", "TEXT", "a system message before the conversation (implies --chat)", &system),
        DT_O_INT("-n", "N", "generate at most N tokens per reply (default 128)", &n_new, 0, 1e9),
        DT_O_FLOAT("--temp", "T", "sampling temperature, 0 = greedy (default 0)", &temp, 0, 100),
        DT_O_FLOAT("--top-p", "P", "nucleus sampling: keep the most likely tokens up to probability P, 0 < P <= 1 (default 1)", &top_p, 0, 1),
        DT_O_INT("--seed", "S", "sampling seed (default 0)", &seed, 0, 9007199254740991.0),
        DT_O_CHOICE("--dtype", "auto|stored|f32|bf16|f16", "the frozen weights' dtype (default auto: bf16 where the CPU has bf16 matrix instructions, else stored: bf16/f16 matrices kept as the file has them, computed in f32)", &dtype_s),
        DT_O_CHOICE("--device", "cpu|cuda", "where the model runs (default cpu; cuda computes in f32 with the weights and the KV cache on the GPU)", &device),
    };
    const dt_cli cli = {"generate", "--model PATH (--prompt TEXT | --chat) [--adapter DIR ...] [options]",
                        "Streams text from a model with a KV cache, adapters applied unmerged. Generation stops at\n"
                        "-n tokens or at an end-of-sequence id (the tokenizer's, config.json's and generation_config.json's).",
                        opts, (int)(sizeof opts / sizeof opts[0]), NULL};
    int st = dt_cli_parse(&cli, argc, argv, NULL, NULL, 0);
    if (st >= 0) return st;
    if (top_p <= 0) return dt_cli_bad(&cli, "--top-p '%g': expected a number above 0 and at most 1", top_p);
    if (system) chat = true;
    if (!model || (!prompt && !chat)) return dt_cli_bad(&cli, "--model and --prompt (or --chat) are required");
    dt_dtype_choice_parse(dtype_s, &dtype); // one of the choices the table accepted
    dt_ctx ctx;
    dt_cli_ctx_init(&ctx);
    dt_llama *m = NULL;
    dt_tokenizer *tok = NULL;
    dt_adapter *ad[MAX_ADAPTERS] = {0};
    dt_adapter_dev dev[MAX_ADAPTERS] = {{0}};
    const dt_backend *be = NULL;
    const dt_linear_hook **chain = NULL;
    dt_gen g = {0};
    char *tpath = tokdir ? strdup(tokdir) : dt_model_tokenizer_path(model);
    // A missing model is named as such, not as a missing tokenizer (which is looked for first, beside it).
    int rc = !tpath ? dt_fail(&ctx, DT_ENOMEM, "out of memory")
             : access(model, F_OK) ? dt_fail(&ctx, DT_EINPUT, "--model %s: no such model file or folder", model)
                                   : dt_tokenizer_load(&ctx, tpath, &tok);
    if (!rc) rc = dt_check_vocab_of(&ctx, tok, tpath, model);
    free(tpath);
    if (!rc) rc = dt_cli_backend(&ctx, device, dtype, &be);
    if (!rc && be->device == DT_DEV_CUDA) // f32 matrices (ggml block types as stored) on the device
        rc = dt_cli_backend_check(&ctx, be, dt_llama_load(&ctx, model, be, &m));
    else if (!rc) rc = dt_llama_load_cpu(&ctx, model, dtype, "--dtype", &m);
    dt_llama_adapters view = {0};
    if (!rc) chain = calloc((size_t)m->cfg.num_layers * DT_MOD_COUNT, sizeof *chain);
    for (int i = 0; i < n_ad && !rc; i++) {
        if ((rc = dt_adapter_load(&ctx, adapters[i], m, &ad[i]))) break;
        if (be->device != DT_DEV_CPU && ad[i]->view.embed.fn) {
            rc = dt_fail(&ctx, DT_EINPUT, "%s: --device cuda: LoRA on embed_tokens runs on the CPU only", adapters[i]);
            break;
        }
        if ((rc = dt_cli_backend_check(&ctx, be, dt_adapter_dev_attach(&ctx, &dev[i], ad[i], be)))) break;
        if (ad[i]->method == &dt_method_prompt) {
            if (view.prompt) { rc = dt_fail(&ctx, DT_EINPUT, "%s: only one prompt-tuning adapter can be applied", adapters[i]); break; }
            view.prompt = ad[i]->view.prompt;
            continue;
        }
        if (ad[i]->view.kv_prefix.fn) { // prefix tuning: the forward has one key/value prefix
            if (view.kv_prefix.fn) { rc = dt_fail(&ctx, DT_EINPUT, "%s: only one prefix-tuning adapter can be applied", adapters[i]); break; }
            view.kv_prefix = ad[i]->view.kv_prefix;
            continue;
        }
        if (ad[i]->view.site.fn) { // IA3, DoRA, bottleneck, BitFit: one such adapter (the forward has one site)
            if (view.site.fn) { rc = dt_fail(&ctx, DT_EINPUT, "%s: only one IA3, DoRA, bottleneck or BitFit adapter can be applied at a time", adapters[i]); break; }
            view.site = ad[i]->view.site;
        }
        if (ad[i]->view.embed.fn) { // LoRA on embed_tokens: one (the forward has one embedding site)
            if (view.embed.fn) { rc = dt_fail(&ctx, DT_EINPUT, "%s: only one adapter on embed_tokens can be applied at a time", adapters[i]); break; }
            view.embed = ad[i]->view.embed;
        }
        if (ad[i]->view.lm_head) { // LoRA on lm_head: chained like the linears' hooks
            ad[i]->head_hook.next = view.lm_head;
            view.lm_head = &ad[i]->head_hook;
        }
        // Chain this adapter's LoRA modules behind those already loaded.
        for (int k = 0; ad[i]->hook_ptrs && k < m->cfg.num_layers * DT_MOD_COUNT; k++) {
            dt_linear_hook *h = ad[i]->hook_ptrs[k] ? &ad[i]->hooks[k] : NULL;
            if (!h) continue;
            h->next = chain[k];
            chain[k] = h;
        }
        view.linear = chain;
    }
    // DoRA rescales its module's whole output, which would rescale another adapter's LoRA term as well.
    int n_lora = 0, dora = -1;
    for (int i = 0; i < n_ad && !rc; i++) {
        n_lora += ad[i]->ref_ptrs != NULL;
        if (ad[i]->method == &dt_method_lora && ad[i]->lora.use_dora) dora = i;
    }
    if (!rc && dora >= 0 && n_lora > 1)
        rc = dt_fail(&ctx, DT_EINPUT, "%s: a DoRA adapter cannot be combined with other LoRA adapters (merge one of them first)", adapters[dora]);
    if (rc) goto done;
    g = (dt_gen){.m = m, .tok = tok, .view = &view, .n_new = n_new, .temp = (float)temp, .top_p = (float)top_p,
                 .rng = {(uint64_t)seed}, .out = stdout};
    // Generation ends at the tokenizer's EOS, config.json's and generation_config.json's (Llama 3 Instruct
    // lists <|eot_id|> only there), and at a GGUF's end-of-turn token (tokenizer.ggml.eot_token_id).
    int32_t ends[] = {dt_tokenizer_eos_id(tok), m->cfg.eos_token_id, dt_tokenizer_eot_id(tok)};
    for (size_t i = 0; i < 3; i++) {
        bool seen = ends[i] < 0;
        for (int k = 0; k < g.n_eos && !seen; k++) seen = g.eos[k] == ends[i];
        if (!seen) g.eos[g.n_eos++] = ends[i];
    }
    rc = dt_model_generation_eos(&ctx, model, g.eos, DT_GEN_MAX_EOS, &g.n_eos);
    if (!rc) rc = dt_gen_init(&ctx, &g);
    if (!rc) rc = chat ? dt_gen_chat(&ctx, &g, system, prompt, stdin) : dt_gen_complete(&ctx, &g, prompt);
    if (be) rc = dt_cli_backend_check(&ctx, be, rc);
done:
    dt_gen_free(&g);
    free(chain);
    for (int i = 0; i < n_ad; i++) {
        dt_adapter_dev_release(&dev[i], ad[i]);
        dt_adapter_free(ad[i]);
    }
    dt_tokenizer_free(tok);
    dt_llama_free(m);
    return rc ? dt_cli_fail("generate", &ctx, rc) : 0;
}

// deltatune generate --model DIR [--adapter DIR ...] [--tokenizer DIR] [--chat] --prompt TEXT [-n N] [--temp T]
//                    [--top-p P] [--seed S]
// Streams text with a KV cache; adapters are applied unmerged (several LoRA adapters add up; at most
// one prompt-tuning adapter). At temperature 0 the choice is greedy.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/rng.h"
#include "datasets/chat_template.h"
#include "datasets/tokenizer.h"
#include "models/llama_infer.h"
#include "peft/peft_io.h"
#include "tools/commands.h"

#define MAX_ADAPTERS 16

typedef struct { float p; int32_t id; } cand;
static int by_p_desc(const void *a, const void *b) {
    float x = ((const cand *)a)->p, y = ((const cand *)b)->p;
    return x < y ? 1 : x > y ? -1 : 0;
}

// Greedy at temp 0, else nucleus sampling over softmax(logits / temp).
static int32_t sample(const float *logits, int64_t V, float temp, float top_p, dt_rng *rng, cand *buf) {
    int32_t best = 0;
    for (int64_t i = 1; i < V; i++) if (logits[i] > logits[best]) best = (int32_t)i;
    if (temp <= 0) return best;
    double sum = 0;
    for (int64_t i = 0; i < V; i++) { buf[i].p = expf((logits[i] - logits[best]) / temp); buf[i].id = (int32_t)i; sum += buf[i].p; }
    qsort(buf, (size_t)V, sizeof *buf, by_p_desc);
    double cut = 0, keep = 0;
    int64_t n = 0;
    while (n < V && (n == 0 || cut < top_p)) { cut += buf[n].p / sum; keep += buf[n].p; n++; }
    double u = dt_rng_uniform(rng) * keep, acc = 0;
    for (int64_t i = 0; i < n; i++) { acc += buf[i].p; if (u < acc) return buf[i].id; }
    return buf[n - 1].id;
}

// What the model's template appends with add_generation_prompt=True: the opening of the assistant turn.
static const char *generation_prompt(dt_chat_tmpl k) {
    switch (k) {
    case DT_TMPL_CHATML: case DT_TMPL_QWEN3: return "<|im_start|>assistant\n";
    case DT_TMPL_LLAMA3: case DT_TMPL_LLAMA31: return "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case DT_TMPL_ZEPHYR: return "<|assistant|>\n";
    case DT_TMPL_ALPACA: return "\n\n### Response:\n";
    default: return ""; // llama2 / mistral: "[INST] ... [/INST]" already ends the prompt
    }
}

// The prompt as one user turn in the model's chat template, plus the generation prompt.
static int chat_prompt(dt_ctx *ctx, const dt_tokenizer *tok, const char *text, dt_ids *ids) {
    const char *jinja = dt_tokenizer_chat_template(tok);
    if (!jinja) return dt_fail(ctx, DT_EINPUT, "--chat: the tokenizer has no chat_template in tokenizer_config.json");
    dt_chat_fmt f;
    int rc = dt_chat_tmpl_detect(ctx, jinja, &f);
    if (rc) return rc;
    dt_message msg = {DT_ROLE_USER, text, strlen(text)};
    dt_seg_encoder e;
    if ((rc = dt_seg_encoder_init(ctx, &e, tok))) return rc;
    dt_segs segs = {0};
    dt_ids labels = {0};
    const char *gp = generation_prompt(f.kind);
    rc = dt_chat_render(ctx, &f, &msg, 1, &e, &segs);
    if (!rc && gp[0]) rc = dt_segs_text(ctx, &segs, gp, strlen(gp), false);
    if (!rc) rc = dt_segs_encode(ctx, &e, &segs, true, ids, &labels);
    dt_ids_free(&labels);
    dt_segs_free(&segs);
    dt_seg_encoder_free(&e);
    return rc;
}

static int usage(void) {
    fprintf(stderr, "usage: deltatune generate --model DIR [--adapter DIR ...] [--tokenizer DIR] [--chat] --prompt TEXT [-n N]\n"
                    "                          [--temp T] [--top-p P] [--seed S]\n");
    return 2;
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *tokdir = NULL, *prompt = NULL, *adapters[MAX_ADAPTERS];
    int n_ad = 0, n_new = 128;
    float temp = 0.0f, top_p = 1.0f;
    unsigned long long seed = 0;
    bool chat = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = argv[++i];
        else if (!strcmp(a, "--adapter") && v && n_ad < MAX_ADAPTERS) adapters[n_ad++] = argv[++i];
        else if (!strcmp(a, "--tokenizer") && v) tokdir = argv[++i];
        else if (!strcmp(a, "--prompt") && v) prompt = argv[++i];
        else if (!strcmp(a, "-n") && v) n_new = atoi(argv[++i]);
        else if (!strcmp(a, "--temp") && v) temp = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--top-p") && v) top_p = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--seed") && v) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--chat")) chat = true;
        else { fprintf(stderr, "deltatune generate: unknown or incomplete option '%s'\n", a); return usage(); }
    }
    if (!model || !prompt || n_new < 0 || temp < 0 || top_p <= 0 || top_p > 1) return usage();
    dt_ctx ctx;
    dt_ctx_init(&ctx);
    ctx.warn = dt_cli_warn;
    dt_llama *m = NULL;
    dt_tokenizer *tok = NULL;
    dt_adapter *ad[MAX_ADAPTERS] = {0};
    dt_kv_cache cache = {0};
    const dt_linear_hook **chain = NULL;
    dt_ids ids = {0};
    float *logits = NULL;
    cand *buf = NULL;
    char *text = NULL;
    int rc = dt_llama_load(&ctx, model, dt_backend_cpu(), &m);
    if (!rc) rc = dt_tokenizer_load(&ctx, tokdir ? tokdir : model, &tok);
    dt_llama_adapters view = {0};
    if (!rc) chain = calloc((size_t)m->cfg.num_layers * DT_MOD_COUNT, sizeof *chain);
    for (int i = 0; i < n_ad && !rc; i++) {
        if ((rc = dt_adapter_load(&ctx, adapters[i], m, &ad[i]))) break;
        if (ad[i]->method == &dt_method_prompt) {
            if (view.prompt) { rc = dt_fail(&ctx, DT_EINPUT, "%s: only one prompt-tuning adapter can be applied", adapters[i]); break; }
            view.prompt = ad[i]->view.prompt;
            continue;
        }
        if (ad[i]->view.site.fn) { // IA3, DoRA: one such adapter (the forward has one site)
            if (view.site.fn) { rc = dt_fail(&ctx, DT_EINPUT, "%s: only one IA3 or DoRA adapter can be applied at a time", adapters[i]); break; }
            view.site = ad[i]->view.site;
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
    if (!rc) rc = chat ? chat_prompt(&ctx, tok, prompt, &ids) : dt_tokenizer_encode(&ctx, tok, prompt, strlen(prompt), true, &ids);
    int64_t P = view.prompt ? view.prompt->shape[0] : 0;
    if (!rc) rc = dt_kv_cache_init(&ctx, m, P + (int64_t)ids.n + n_new + 1, &cache);
    int64_t V = m ? m->cfg.vocab_size : 0;
    if (!rc) {
        logits = malloc((size_t)V * sizeof(float));
        buf = malloc((size_t)V * sizeof(cand));
        if (!logits || !buf) rc = dt_fail(&ctx, DT_ENOMEM, "out of memory");
    }
    if (!rc && ids.n == 0) rc = dt_fail(&ctx, DT_EINPUT, "the prompt has no tokens");
    if (!rc) rc = dt_llama_infer(&ctx, m, &view, &cache, ids.v, (int64_t)ids.n, logits);
    if (rc) goto done;
    if (!chat) fputs(prompt, stdout); // a chat reply is printed alone
    fflush(stdout);
    dt_rng rng = {seed};
    size_t prompt_n = ids.n, shown = 0;
    int32_t eos = dt_tokenizer_eos_id(tok);
    for (int i = 0; i < n_new; i++) {
        int32_t next = sample(logits, V, temp, top_p, &rng, buf);
        if (next == eos) break;
        if ((rc = dt_ids_push(&ctx, &ids, next))) break;
        // Decode everything generated so far and print what is new, holding back an unfinished UTF-8 tail.
        size_t len;
        free(text);
        text = NULL;
        if ((rc = dt_tokenizer_decode(&ctx, tok, ids.v + prompt_n, ids.n - prompt_n, true, &text, &len))) break;
        size_t end = len;
        while (end > shown && end > 0 && ((unsigned char)text[end - 1] & 0xC0) == 0x80) end--;
        if (end > shown && end > 0 && ((unsigned char)text[end - 1] & 0x80)) {
            unsigned char lead = (unsigned char)text[end - 1];
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
            if (len - (end - 1) >= need) end = len; else end--;
        } else end = len;
        if (end > shown) { fwrite(text + shown, 1, end - shown, stdout); fflush(stdout); shown = end; }
        if ((rc = dt_llama_infer(&ctx, m, &view, &cache, &next, 1, logits))) break;
    }
    if (!rc && text && shown < strlen(text)) fputs(text + shown, stdout);
    if (!rc) fputc('\n', stdout);
done:
    free(text);
    free(buf);
    free(logits);
    dt_ids_free(&ids);
    dt_kv_cache_free(&cache);
    free(chain);
    for (int i = 0; i < n_ad; i++) dt_adapter_free(ad[i]);
    dt_tokenizer_free(tok);
    dt_llama_free(m);
    return rc ? dt_cli_fail("generate", &ctx, rc) : 0;
}

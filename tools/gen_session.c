#include "tools/gen_session.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "datasets/decode_stream.h"

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

int dt_gen_init(dt_ctx *ctx, dt_gen *g) {
    int64_t V = g->m->cfg.vocab_size;
    g->logits = malloc((size_t)V * sizeof(float));
    g->cand = malloc((size_t)V * sizeof(cand));
    if (!g->logits || !g->cand) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    dt_thread_gov_init(&g->gov, 0);
    return DT_OK;
}

void dt_gen_free(dt_gen *g) {
    dt_kv_cache_free(&g->cache);
    dt_ids_free(&g->fed);
    free(g->logits);
    free(g->cand);
}

static int64_t n_virtual(const dt_gen *g) { return dt_llama_cache_front(g->view); }

// Makes the cache hold ids (n) with room for n_new more, feeding only what differs from what it holds:
// a chat's next turn re-uses the whole conversation so far.
static int feed(dt_ctx *ctx, dt_gen *g, const int32_t *ids, size_t n) {
    if (n == 0) return dt_fail(ctx, DT_EINPUT, "the prompt has no tokens");
    int64_t P = n_virtual(g), need = P + (int64_t)n + g->n_new + 1, ctx_len = g->m->cfg.max_position_embeddings;
    if (ctx_len > 0 && need - 1 > ctx_len && !g->warned_context) {
        dt_warn(ctx, "the prompt (%lld tokens%s) plus up to %lld new ones exceeds the model's context of %lld tokens "
                "(max_position_embeddings): what comes after it will be poor", (long long)n,
                P ? " after the virtual tokens" : "", (long long)g->n_new, (long long)ctx_len);
        g->warned_context = true;
    }
    // The forward refuses positions past a sliding window (models/llama.c): said before anything is
    // generated rather than in the middle of the reply.
    const int64_t win = g->m->cfg.sliding_window;
    if (win > 0 && need - 1 > win)
        return dt_fail(ctx, DT_EUNSUPPORTED, "the prompt (%lld tokens%s) plus up to %lld new ones exceeds the model's "
                       "sliding_window (%lld), and sliding-window attention is not supported: shorten the prompt or lower -n",
                       (long long)n, P ? " after the virtual tokens" : "", (long long)g->n_new, (long long)win);
    size_t keep = 0; // ids already in the cache
    while (keep < n && keep < g->fed.n && g->fed.v[keep] == ids[keep]) keep++;
    if (keep == n) keep--; // at least one id is fed, for its logits
    int rc;
    if (need > g->cache.cap) { // grow (rare: a long chat); the cache starts again
        int64_t cap = need > 2 * g->cache.cap ? need : 2 * g->cache.cap;
        dt_kv_cache_free(&g->cache);
        memset(&g->cache, 0, sizeof g->cache);
        if ((rc = dt_kv_cache_init(ctx, g->m, cap, &g->cache))) return rc;
        keep = 0;
    }
    // Positions past `keep` are dropped; with nothing kept the virtual tokens go in again too.
    g->cache.len = keep ? P + (int64_t)keep : 0;
    g->fed.n = keep;
    if ((rc = dt_ids_append(ctx, &g->fed, ids + keep, n - keep))) return rc;
    return dt_llama_infer(ctx, g->m, g->view, &g->cache, ids + keep, (int64_t)(n - keep), g->logits);
}

static bool is_eos(const dt_gen *g, int32_t id) {
    for (int i = 0; i < g->n_eos; i++) if (g->eos[i] == id) return true;
    return false;
}

static int emit(dt_ctx *ctx, dt_gen *g, const char *s, size_t n, char **reply, size_t *reply_len) {
    if (!n) return DT_OK;
    fwrite(s, 1, n, g->out);
    fflush(g->out);
    if (!reply) return DT_OK;
    char *r = realloc(*reply, *reply_len + n + 1);
    if (!r) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    memcpy(r + *reply_len, s, n);
    *reply_len += n;
    r[*reply_len] = 0;
    *reply = r;
    return DT_OK;
}

// Samples up to n_new ids after what was fed, streaming their text; the text is also kept in *reply
// when reply is not NULL. The ids stay in g->fed (the cache holds all but the last).
static int reply_after(dt_ctx *ctx, dt_gen *g, char **reply, size_t *reply_len) {
    dt_decode_stream ds;
    dt_decode_stream_init(&ds, g->fed.n);
    int rc = DT_OK;
    const char *piece;
    size_t len;
    for (int64_t i = 0; i < g->n_new && !rc; i++) {
        dt_thread_gov_tick(&g->gov);
        // Ids past the tokenizer's (rows of a padded embedding matrix) have no text: never chosen.
        int64_t V = g->m->cfg.vocab_size, tv = dt_tokenizer_vocab_size(g->tok);
        int32_t next = sample(g->logits, tv < V ? tv : V, g->temp, g->top_p, &g->rng, g->cand);
        if (is_eos(g, next)) break;
        if ((rc = dt_ids_push(ctx, &g->fed, next))) break;
        if ((rc = dt_decode_stream_next(ctx, &ds, g->tok, g->fed.v, g->fed.n, &piece, &len))) break;
        if ((rc = emit(ctx, g, piece, len, reply, reply_len))) break;
        if (i + 1 < g->n_new) rc = dt_llama_infer(ctx, g->m, g->view, &g->cache, &next, 1, g->logits);
    }
    if (!rc) rc = dt_decode_stream_flush(ctx, &ds, g->tok, g->fed.v, g->fed.n, &piece, &len);
    if (!rc) rc = emit(ctx, g, piece, len, reply, reply_len);
    // The last sampled id was never fed: drop it from what the cache is said to hold.
    if (g->fed.n > 0 && g->cache.len < n_virtual(g) + (int64_t)g->fed.n) g->fed.n--;
    dt_decode_stream_free(&ds);
    if (!rc) fputc('\n', g->out);
    return rc;
}

int dt_gen_complete(dt_ctx *ctx, dt_gen *g, const char *prompt) {
    dt_ids ids = {0};
    int rc = dt_tokenizer_encode(ctx, g->tok, prompt, strlen(prompt), true, &ids);
    if (!rc) rc = feed(ctx, g, ids.v, ids.n);
    dt_ids_free(&ids);
    if (rc) return rc;
    fputs(prompt, g->out);
    return reply_after(ctx, g, NULL, NULL);
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

// The conversation (n messages) in the model's chat template, plus the generation prompt.
static int render(dt_ctx *ctx, const dt_gen *g, const dt_chat_fmt *f, const dt_message *msgs, size_t n, dt_ids *ids) {
    dt_seg_encoder e;
    int rc = dt_seg_encoder_init(ctx, &e, g->tok);
    if (rc) return rc;
    dt_segs segs = {0};
    dt_ids labels = {0};
    const char *gp = generation_prompt(f->kind);
    ids->n = 0;
    rc = dt_chat_render(ctx, f, msgs, n, &e, &segs);
    if (!rc && gp[0]) rc = dt_segs_text(ctx, &segs, gp, strlen(gp), false);
    if (!rc) rc = dt_segs_encode(ctx, &e, &segs, true, ids, &labels);
    dt_ids_free(&labels);
    dt_segs_free(&segs);
    dt_seg_encoder_free(&e);
    return rc;
}

int dt_gen_chat(dt_ctx *ctx, dt_gen *g, const char *system, const char *prompt, FILE *in) {
    const char *jinja = dt_tokenizer_chat_template(g->tok);
    if (!jinja)
        return dt_fail(ctx, DT_EINPUT, "--chat: the tokenizer %s has no chat template (%s)",
                       dt_tokenizer_path(g->tok), dt_tokenizer_chat_template_origin(g->tok));
    char where[4200];
    snprintf(where, sizeof where, "%s: %s", dt_tokenizer_path(g->tok), dt_tokenizer_chat_template_origin(g->tok));
    dt_chat_fmt f;
    int rc = dt_chat_tmpl_detect_in(ctx, jinja, where, &f);
    if (rc) return rc;
    // The conversation; every text is malloc'd (line buffers and replies), freed at the end.
    dt_message *msgs = NULL;
    size_t n = 0, cap = 0;
    char **owned = NULL;
    size_t n_owned = 0;
    dt_ids ids = {0};
    bool interactive = prompt == NULL, tty = interactive && isatty(fileno(in));
    char *line = NULL;
    size_t line_cap = 0;
    for (int turn = 0; !rc; turn++) {
        if (n + 3 > cap) {
            cap = cap ? 2 * cap : 16;
            dt_message *m = realloc(msgs, cap * sizeof *m);
            if (m) msgs = m;
            char **o = realloc(owned, cap * sizeof *o);
            if (o) owned = o;
            if (!m || !o) { rc = dt_fail(ctx, DT_ENOMEM, "out of memory"); break; }
        }
        if (turn == 0 && system) msgs[n++] = (dt_message){DT_ROLE_SYSTEM, system, strlen(system)};
        const char *user = prompt;
        if (interactive) {
            if (tty) { fputs("> ", stderr); fflush(stderr); }
            ssize_t len = getline(&line, &line_cap, in);
            if (len < 0) break;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len == 0) break;
            owned[n_owned++] = line;
            user = line;
            line = NULL;
            line_cap = 0;
        } else if (turn > 0) break;
        msgs[n++] = (dt_message){DT_ROLE_USER, user, strlen(user)};
        if ((rc = render(ctx, g, &f, msgs, n, &ids)) || (rc = feed(ctx, g, ids.v, ids.n))) break;
        char *reply = NULL;
        size_t reply_len = 0;
        if ((rc = reply_after(ctx, g, &reply, &reply_len))) { free(reply); break; }
        if (!reply) reply = strdup("");
        if (!reply) { rc = dt_fail(ctx, DT_ENOMEM, "out of memory"); break; }
        owned[n_owned++] = reply;
        msgs[n++] = (dt_message){DT_ROLE_ASSISTANT, reply, reply_len};
    }
    free(line);
    for (size_t i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    free(msgs);
    dt_ids_free(&ids);
    return rc;
}

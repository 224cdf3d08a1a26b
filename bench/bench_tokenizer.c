// Tokenizer benchmark (in process, no I/O): load time of each fixture tokenizer (the Qwen3 tokenizer.json
// is 11 MB and must load in under 0.5 s), then encode throughput on ~10 MB of text made of corpus lines
// joined in random groups of 1-4, with 1 thread and with all threads. The side-by-side comparison with the
// JavaScript reference is bench/bench_tokenizer.sh.
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "datasets/tokenizer.h"
#include "bench/bench_util.h"

typedef struct { char **s; size_t *n; size_t count; } texts;

static int read_corpus(const char *path, texts *t) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    memset(t, 0, sizeof *t);
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (json_is_string(j)) {
            t->s = realloc(t->s, (t->count + 1) * sizeof *t->s);
            t->n = realloc(t->n, (t->count + 1) * sizeof *t->n);
            t->n[t->count] = json_string_length(j);
            t->s[t->count] = malloc(t->n[t->count] + 1);
            memcpy(t->s[t->count], json_string_value(j), t->n[t->count] + 1);
            t->count++;
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return t->count ? 0 : -1;
}

// About `bytes` of text: random groups of 1-4 corpus lines joined by a space (the recipe of the .sh
// script, with other random numbers).
static void make_text(const texts *corpus, size_t bytes, texts *out) {
    uint64_t seed = 42;
    size_t total = 0, cap = 0;
    memset(out, 0, sizeof *out);
    while (total < bytes) {
        seed = (seed * 1103515245 + 12345) % 2147483648u;
        size_t k = 1 + seed % 4, len = 0;
        char *s = NULL;
        for (size_t i = 0; i < k; i++) {
            seed = (seed * 1103515245 + 12345) % 2147483648u;
            size_t j = seed % corpus->count;
            s = realloc(s, len + corpus->n[j] + 2);
            if (i) s[len++] = ' ';
            memcpy(s + len, corpus->s[j], corpus->n[j]);
            len += corpus->n[j];
        }
        if (out->count == cap) {
            cap = cap ? 2 * cap : 1024;
            out->s = realloc(out->s, cap * sizeof *out->s);
            out->n = realloc(out->n, cap * sizeof *out->n);
        }
        out->s[out->count] = s;
        out->n[out->count++] = len;
        total += len;
    }
}

static void free_texts(texts *t) {
    for (size_t i = 0; i < t->count; i++) free(t->s[i]);
    free(t->s);
    free(t->n);
}

// Encodes every line, threads at a time; returns seconds and the number of ids.
static double encode_all(const dt_tokenizer *tok, const texts *t, int threads, size_t *n_ids) {
    size_t total = 0;
    int failed = 0;
    double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : total, failed)
    {
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        dt_ids ids = {0};
#pragma omp for schedule(dynamic, 256)
        for (size_t i = 0; i < t->count; i++) {
            ids.n = 0;
            failed += dt_tokenizer_encode(&ctx, tok, t->s[i], t->n[i], false, &ids) != 0;
            total += ids.n;
        }
        dt_ids_free(&ids);
    }
    double dt = now() - t0;
    if (failed) printf("  %d lines failed to encode\n", failed);
    *n_ids = total;
    return dt;
}

int main(void) {
    const char *fx = getenv("DT_FIXTURES");
    if (!fx) fx = "../shared/fixtures";
    texts corpus, text;
    if (read_corpus("tests/data/tokenizer/corpus.jsonl", &corpus)) {
        printf("bench_tokenizer: run from the project root (needs tests/data/tokenizer/corpus.jsonl)\n");
        return 1;
    }
    make_text(&corpus, 10000000, &text);
    size_t bytes = 0;
    for (size_t i = 0; i < text.count; i++) bytes += text.n[i];
    printf("text: %.2f MB in %zu lines; %d threads available\n", 1e-6 * (double)bytes, text.count, omp_get_max_threads());
    static const char *NAMES[] = {"qwen3", "llama3", "mistral"};
    for (int k = 0; k < 3; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tokenizers/%s", fx, NAMES[k]);
        dt_ctx ctx;
        dt_ctx_init(&ctx);
        dt_tokenizer *tok = NULL;
        double best = 1e9;
        for (int r = 0; r < 3; r++) { // best of three loads
            if (tok) dt_tokenizer_free(tok);
            double t0 = now();
            if (dt_tokenizer_load(&ctx, path, &tok)) {
                printf("%-8s skipped: %s\n", NAMES[k], ctx.msg);
                tok = NULL;
                break;
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        if (!tok) continue;
        size_t n1, nn;
        double t1 = encode_all(tok, &text, 1, &n1);
        double tn = encode_all(tok, &text, omp_get_max_threads(), &nn);
        printf("%-8s load %.3f s%s | 1 thread: %.2f s, %.1f MB/s, %.2f M ids/s | %d threads: %.1f MB/s\n", NAMES[k], best,
               k == 0 ? (best < 0.5 ? " (< 0.5 s: ok)" : " (OVER the 0.5 s budget)") : "", t1, 1e-6 * (double)bytes / t1,
               1e-6 * (double)n1 / t1, omp_get_max_threads(), 1e-6 * (double)bytes / tn);
        dt_tokenizer_free(tok);
    }
    free_texts(&text);
    free_texts(&corpus);
    return 0;
}

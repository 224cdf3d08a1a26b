// `deltatune preview`: one example decoded, with the trained tokens marked.
#include <stdlib.h>
#include <string.h>
#include "datasets/dataset.h"

int dt_dataset_render_example(dt_ctx *ctx, const dt_dataset *ds, const dt_tokenizer *tok, size_t i, FILE *out) {
    return dt_dataset_render_example_styled(ctx, ds, tok, i, false, out);
}

int dt_dataset_render_example_styled(dt_ctx *ctx, const dt_dataset *ds, const dt_tokenizer *tok, size_t i,
                                     bool ansi, FILE *out) {
    if (!tok) return dt_fail(ctx, DT_EINPUT, "showing an example needs a tokenizer to decode its tokens");
    if (i >= dt_dataset_size(ds))
        return dt_fail(ctx, DT_EINPUT, "example %zu does not exist (the dataset has %zu)", i, dt_dataset_size(ds));
    const int32_t *ids, *labels;
    int64_t n = dt_dataset_example(ds, i, &ids, &labels), trained = 0, line;
    bool cut;
    const char *path = dt_dataset_example_source(ds, i, &line, &cut);
    for (int64_t t = 0; t < n; t++) trained += labels[t] != -100;
    fprintf(out, "example %zu (%s:%lld): %lld tokens, %lld trained, %lld not trained%s\n", i, path, (long long)line,
            (long long)n, (long long)trained, (long long)(n - trained), cut ? ", truncated to max_seq_len" : "");
    // Each run of trained/untrained tokens is cut out of two decodes that start a few tokens before it:
    // ids[s, b) minus ids[s, a). The decoder then sees whole byte sequences and word boundaries at the
    // run's start; where the longer text is not a clean extension of the shorter (a character split across
    // the boundary), the run is decoded on its own. The window keeps preview linear in the example's
    // length: decoding whole prefixes made it quadratic in the number of runs (a chat of many turns).
    // 8 tokens covers the longest split there is: a 4-byte character written as 4 byte tokens.
    enum { CONTEXT = 8 };
    char *prev = NULL, *cur = NULL, *piece = NULL;
    size_t prev_len = 0, cur_len, piece_len;
    int st = DT_OK;
    for (int64_t a = 0; a < n && !st;) {
        bool tr = labels[a] != -100;
        int64_t b = a, s = a > CONTEXT ? a - CONTEXT : 0;
        while (b < n && (labels[b] != -100) == tr) b++;
        if ((st = dt_tokenizer_decode(ctx, tok, ids + s, (size_t)(a - s), false, &prev, &prev_len))) break;
        if ((st = dt_tokenizer_decode(ctx, tok, ids + s, (size_t)(b - s), false, &cur, &cur_len))) break;
        const char *text = cur + prev_len;
        size_t len = cur_len - prev_len;
        if (cur_len < prev_len || (prev_len && memcmp(cur, prev, prev_len))) {
            if ((st = dt_tokenizer_decode(ctx, tok, ids + a, (size_t)(b - a), false, &piece, &piece_len))) break;
            text = piece, len = piece_len;
        }
        if (ansi) fputs(tr ? "\x1b[32m" : "\x1b[2m", out);
        else if (tr) fputs("\xc2\xab", out); // «
        fwrite(text, 1, len, out);
        if (ansi) fputs("\x1b[0m", out);
        else if (tr) fputs("\xc2\xbb", out); // »
        free(piece);
        free(prev);
        free(cur);
        piece = prev = cur = NULL;
        a = b;
    }
    fputc('\n', out);
    free(prev);
    free(cur);
    free(piece);
    return st;
}

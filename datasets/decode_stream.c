#include "datasets/decode_stream.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void dt_decode_stream_init(dt_decode_stream *s, size_t context) {
    memset(s, 0, sizeof *s);
    s->prefix = context > 0 ? context - 1 : 0;
    s->read = context;
}

void dt_decode_stream_free(dt_decode_stream *s) {
    free(s->text);
    s->text = NULL;
}

// Whether text ends in the middle of a UTF-8 character, or in U+FFFD (EF BF BD).
static bool unfinished(const char *t, size_t n) {
    if (n >= 3 && !memcmp(t + n - 3, "\xEF\xBF\xBD", 3)) return true;
    size_t k = 0; // continuation bytes at the end
    while (k < n && k < 3 && ((unsigned char)t[n - 1 - k] & 0xC0) == 0x80) k++;
    if (k == n) return false;
    unsigned char lead = (unsigned char)t[n - 1 - k];
    if (lead < 0xC0) return false; // ASCII (or stray continuation bytes: nothing will complete them)
    size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : 1;
    return k < need;
}

// Decodes ids[prefix..read) and ids[prefix..n); *diff is where the new text starts in s->text.
static int decode_pair(dt_ctx *ctx, dt_decode_stream *s, const dt_tokenizer *tok, const int32_t *ids, size_t n,
                       size_t *diff, size_t *len) {
    char *head = NULL;
    size_t head_len = 0;
    int rc = dt_tokenizer_decode(ctx, tok, ids + s->prefix, s->read - s->prefix, true, &head, &head_len);
    free(head);
    if (rc) return rc;
    free(s->text);
    s->text = NULL;
    if ((rc = dt_tokenizer_decode(ctx, tok, ids + s->prefix, n - s->prefix, true, &s->text, len))) return rc;
    s->ids_decoded += (int64_t)(s->read - s->prefix) + (int64_t)(n - s->prefix);
    *diff = head_len;
    return DT_OK;
}

int dt_decode_stream_next(dt_ctx *ctx, dt_decode_stream *s, const dt_tokenizer *tok, const int32_t *ids, size_t n,
                          const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    size_t diff, len;
    int rc = decode_pair(ctx, s, tok, ids, n, &diff, &len);
    if (rc) return rc;
    if (unfinished(s->text, len)) return DT_OK; // wait for the rest of the character
    // Tokens that add no text (skipped special tokens) join the printed context, so the window stays short.
    if (len <= diff) { s->read = n; return DT_OK; }
    *out = s->text + diff;
    *out_len = len - diff;
    s->prefix = s->read;
    s->read = n;
    return DT_OK;
}

int dt_decode_stream_flush(dt_ctx *ctx, dt_decode_stream *s, const dt_tokenizer *tok, const int32_t *ids, size_t n,
                           const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (s->read >= n) return DT_OK;
    size_t diff, len;
    int rc = decode_pair(ctx, s, tok, ids, n, &diff, &len);
    if (rc || len <= diff) return rc;
    *out = s->text + diff;
    *out_len = len - diff;
    s->prefix = s->read = n;
    return DT_OK;
}

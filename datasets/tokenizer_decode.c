// Decoding ids back to text with HF's decoder chain: each decoder maps a list of token strings to a new
// list (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace); the final list is concatenated.
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"

typedef struct { tk_buf text; tk_seg *tok; size_t n, cap; } tk_list; // tokens as spans of text

static int list_add(dt_ctx *ctx, tk_list *l, const char *s, size_t n) {
    int rc = tk_grow(ctx, (void **)&l->tok, &l->cap, l->n + 1, sizeof *l->tok);
    if (!rc) {
        l->tok[l->n++] = (tk_seg){l->text.n, n, -1};
        rc = tk_buf_put(ctx, &l->text, s, n);
    }
    return rc;
}

// Appends to the last token (which must be the last thing written to l->text).
static int list_extend(dt_ctx *ctx, tk_list *l, const char *s, size_t n) {
    l->tok[l->n - 1].len += n;
    return tk_buf_put(ctx, &l->text, s, n);
}

static void list_free(tk_list *l) {
    tk_buf_free(&l->text);
    free(l->tok);
}

static int byte_level(dt_ctx *ctx, const dt_tokenizer *tok, const tk_list *in, tk_list *out) {
    tk_buf raw = {0};
    int rc = DT_OK;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = in->text.p + in->tok[i].off;
        size_t n = in->tok[i].len, start = raw.n;
        // A token with a character outside the byte table (an added token, say) passes as its UTF-8.
        bool mapped = true;
        for (size_t k = 0, adv; k < n && mapped && !rc; k += adv) {
            uint32_t cp = tk_utf8_next(s + k, n - k, &adv);
            int b = cp < 324 ? tok->cp_to_byte[cp] : -1;
            if (b < 0) mapped = false;
            else rc = tk_buf_put(ctx, &raw, &(char){(char)b}, 1);
        }
        if (!rc && !mapped) {
            raw.n = start;
            rc = tk_buf_put(ctx, &raw, s, n);
        }
    }
    tk_buf text = {0};
    if (!rc) rc = tk_utf8_lossy(ctx, &text, raw.p ? raw.p : "", raw.n);
    if (!rc) rc = list_add(ctx, out, text.p ? text.p : "", text.n);
    tk_buf_free(&raw);
    tk_buf_free(&text);
    return rc;
}

static int replace(dt_ctx *ctx, const tk_dec *d, const char *s, size_t n, tk_list *out) {
    int rc = list_add(ctx, out, "", 0);
    while (!rc && n) {
        const char *hit = d->pat_len ? memmem(s, n, d->pat, d->pat_len) : NULL;
        size_t keep = hit ? (size_t)(hit - s) : n;
        rc = list_extend(ctx, out, s, keep);
        if (!rc && hit) rc = list_extend(ctx, out, d->str, d->len);
        size_t used = keep + (hit ? d->pat_len : 0);
        s += used;
        n -= used;
    }
    return rc;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

// Consecutive <0xXX> tokens become their bytes: the string when valid UTF-8, else one U+FFFD per byte.
static int flush_bytes(dt_ctx *ctx, tk_buf *bytes, tk_list *out) {
    if (!bytes->n) return DT_OK;
    int rc;
    if (tk_utf8_valid_prefix(bytes->p, bytes->n) == bytes->n) {
        rc = list_add(ctx, out, bytes->p, bytes->n);
    } else {
        rc = list_add(ctx, out, "", 0);
        for (size_t i = 0; i < bytes->n && !rc; i++) rc = list_extend(ctx, out, "\xEF\xBF\xBD", 3);
    }
    bytes->n = 0;
    return rc;
}

static int byte_fallback(dt_ctx *ctx, const tk_list *in, tk_list *out) {
    tk_buf bytes = {0};
    int rc = DT_OK;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = in->text.p + in->tok[i].off;
        size_t n = in->tok[i].len;
        if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
            rc = tk_buf_put(ctx, &bytes, &(char){(char)(hexval(s[3]) * 16 + hexval(s[4]))}, 1);
            continue;
        }
        rc = flush_bytes(ctx, &bytes, out);
        if (!rc) rc = list_add(ctx, out, s, n);
    }
    if (!rc) rc = flush_bytes(ctx, &bytes, out);
    tk_buf_free(&bytes);
    return rc;
}

static int strip(dt_ctx *ctx, const tk_dec *d, const char *s, size_t n, tk_list *out) {
    for (size_t k = 0; k < d->start && n >= d->pat_len && d->pat_len && !memcmp(s, d->pat, d->pat_len); k++) {
        s += d->pat_len;
        n -= d->pat_len;
    }
    for (size_t k = 0; k < d->stop && n >= d->pat_len && d->pat_len && !memcmp(s + n - d->pat_len, d->pat, d->pat_len); k++)
        n -= d->pat_len;
    return list_add(ctx, out, s, n);
}

// HF's Metaspace decoder turns the replacement into spaces, and drops it altogether in the first token.
static int metaspace(dt_ctx *ctx, const tk_dec *d, size_t index, const char *s, size_t n, tk_list *out) {
    int rc = list_add(ctx, out, "", 0);
    for (size_t k = 0; k < n && !rc;) {
        if (d->pat_len && n - k >= d->pat_len && !memcmp(s + k, d->pat, d->pat_len)) {
            if (!(index == 0 && d->prepend)) rc = list_extend(ctx, out, " ", 1);
            k += d->pat_len;
        } else {
            rc = list_extend(ctx, out, s + k, 1);
            k++;
        }
    }
    return rc;
}

static int run_decoder(dt_ctx *ctx, const dt_tokenizer *tok, const tk_dec *d, const tk_list *in, tk_list *out) {
    if (d->kind == TK_DEC_BYTE_LEVEL) return byte_level(ctx, tok, in, out);
    if (d->kind == TK_DEC_BYTE_FALLBACK) return byte_fallback(ctx, in, out);
    if (d->kind == TK_DEC_FUSE) return list_add(ctx, out, in->text.p ? in->text.p : "", in->text.n);
    int rc = DT_OK;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = in->text.p + in->tok[i].off;
        size_t n = in->tok[i].len;
        if (d->kind == TK_DEC_REPLACE) rc = replace(ctx, d, s, n, out);
        else if (d->kind == TK_DEC_STRIP) rc = strip(ctx, d, s, n, out);
        else rc = metaspace(ctx, d, i, s, n, out);
    }
    return rc;
}

int tk_decode_hf(dt_ctx *ctx, const dt_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                 tk_buf *out) {
    if (tok->dec_unsupported)
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: decoder %s is not supported", tok->path, tok->dec_unsupported);
    tk_list a = {0}, b = {0};
    // The token list sized once for the whole id list (and its joining spaces), not grown token by token.
    int rc = tk_grow(ctx, (void **)&a.tok, &a.cap, 2 * n, sizeof *a.tok);
    for (size_t i = 0; i < n && !rc; i++) {
        if (skip_special && tok->special[ids[i]]) continue;
        const char *s = tok->id_str[ids[i]];
        // Without a decoder HF joins the tokens with spaces.
        if (!tok->has_decoder && a.n) rc = list_add(ctx, &a, " ", 1);
        if (!rc) rc = list_add(ctx, &a, s, strlen(s));
    }
    for (size_t k = 0; k < tok->n_decs && !rc; k++) {
        b.n = 0;
        b.text.n = 0;
        rc = run_decoder(ctx, tok, &tok->decs[k], &a, &b);
        tk_list t = a;
        a = b;
        b = t;
    }
    if (!rc) rc = tk_buf_put(ctx, out, a.text.p ? a.text.p : "", a.text.n);
    list_free(&a);
    list_free(&b);
    return rc;
}

void tk_decs_free(tk_dec *d, size_t count) {
    for (size_t i = 0; i < count; i++) {
        free(d[i].pat);
        free(d[i].str);
    }
    free(d);
}

// Normalizers (NFC and friends through utf8proc, Prepend, Replace, Lowercase, Strip), applied in order to
// each section of text between added tokens.
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "datasets/tokenizer_impl.h"

// True when every character of s is one that no normalization form changes, reorders or composes
// with what precedes it: below U+0300 (before the combining marks), kana other than the combining voicing
// marks, CJK ideographs, Hangul syllables. Such text is its own NFC/NFD/NFKC/NFKD... except that NFD and
// NFKx still decompose precomposed letters and syllables, so this shortcut serves NFC only.
static bool nfc_stable(const char *s, size_t n) {
    for (size_t i = 0, adv; i < n; i += adv) {
        if ((unsigned char)s[i] < 0x80) {
            adv = 1;
            continue;
        }
        uint32_t cp = tk_utf8_next(s + i, n - i, &adv);
        if (!(cp < 0x300 || (cp >= 0x3041 && cp <= 0x3096) || (cp >= 0x30A1 && cp <= 0x30FA) ||
              (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3)))
            return false;
    }
    return true;
}

static bool all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static int unicode_form(dt_ctx *ctx, tk_work *w, tk_norm_kind kind, const char *s, size_t n, tk_buf *out) {
    utf8proc_option_t opt = UTF8PROC_STABLE;
    opt |= kind == TK_NORM_NFC || kind == TK_NORM_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    if (kind == TK_NORM_NFKC || kind == TK_NORM_NFKD) opt |= UTF8PROC_COMPAT;
    utf8proc_ssize_t got;
    for (;;) {
        got = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, w->u32,
                                 (utf8proc_ssize_t)w->u32_cap, opt);
        if (got < 0) return dt_fail(ctx, DT_EINPUT, "normalizer: %s", utf8proc_errmsg(got));
        if ((size_t)got <= w->u32_cap) break;
        int rc = tk_grow(ctx, (void **)&w->u32, &w->u32_cap, (size_t)got, sizeof *w->u32);
        if (rc) return rc;
    }
    got = utf8proc_normalize_utf32(w->u32, got, opt);
    if (got < 0) return dt_fail(ctx, DT_EINPUT, "normalizer: %s", utf8proc_errmsg(got));
    out->n = 0;
    int rc = tk_buf_reserve(ctx, out, 4 * (size_t)got);
    if (rc) return rc;
    for (utf8proc_ssize_t i = 0; i < got; i++) out->n += (size_t)tk_utf8_put((uint32_t)w->u32[i], out->p + out->n);
    return DT_OK;
}

// Replaces every match of the normalizer's pattern; *changed tells whether anything matched.
static int replace(dt_ctx *ctx, tk_work *w, const tk_norm *nm, const char *s, size_t n, tk_buf *out,
                   bool *changed) {
    out->n = 0;
    *changed = false;
    size_t pos = 0, copied = 0, ms, me;
    bool found;
    int rc;
    while (!(rc = tk_regex_find(ctx, nm->re, w->md, s, n, &pos, &ms, &me, &found)) && found) {
        if ((rc = tk_buf_put(ctx, out, s + copied, ms - copied)) || (rc = tk_buf_put(ctx, out, nm->str, nm->len)))
            return rc;
        *changed = true;
        copied = me;
    }
    return rc || !*changed ? rc : tk_buf_put(ctx, out, s + copied, n - copied);
}

static int lowercase(dt_ctx *ctx, const char *s, size_t n, tk_buf *out) {
    out->n = 0;
    int rc = tk_buf_reserve(ctx, out, n + 8);
    if (rc) return rc;
    for (size_t i = 0, adv; i < n; i += adv) {
        uint32_t cp = tk_utf8_next(s + i, n - i, &adv);
        cp = cp < 0x80 ? (cp >= 'A' && cp <= 'Z' ? cp + 32 : cp) : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
        if ((rc = tk_buf_reserve(ctx, out, 4))) return rc;
        out->n += (size_t)tk_utf8_put(cp, out->p + out->n);
    }
    return DT_OK;
}

int tk_normalize(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n,
                 const char **out, size_t *out_n) {
    int which = 0, rc = DT_OK;
    for (size_t k = 0; k < tok->n_norms && !rc; k++) {
        const tk_norm *nm = &tok->norms[k];
        tk_buf *dst = &w->nb[which];
        bool wrote = true;
        switch (nm->kind) {
        case TK_NORM_NFC: case TK_NORM_NFD: case TK_NORM_NFKC: case TK_NORM_NFKD:
            // ASCII is the same in every normalization form.
            if (nm->kind == TK_NORM_NFC ? nfc_stable(s, n) : all_ascii(s, n)) wrote = false;
            else rc = unicode_form(ctx, w, nm->kind, s, n, dst);
            break;
        case TK_NORM_PREPEND:
            // HF prepends only to non-empty text.
            if (n == 0) {
                wrote = false;
                break;
            }
            dst->n = 0;
            rc = tk_buf_put(ctx, dst, nm->str, nm->len);
            if (!rc) rc = tk_buf_put(ctx, dst, s, n);
            break;
        case TK_NORM_REPLACE:
            rc = replace(ctx, w, nm, s, n, dst, &wrote);
            break;
        case TK_NORM_LOWERCASE:
            rc = lowercase(ctx, s, n, dst);
            break;
        case TK_NORM_STRIP: {
            size_t adv;
            while (nm->left && n && tk_is_white_space(tk_utf8_next(s, n, &adv))) { s += adv; n -= adv; }
            while (nm->right && n && tk_is_white_space(tk_utf8_prev(s, n, &adv))) n -= adv;
            wrote = false;
            break;
        }
        }
        if (!rc && wrote) {
            s = dst->p;
            n = dst->n;
            which ^= 1;
        }
    }
    *out = s;
    *out_n = n;
    return rc;
}

void tk_norms_free(tk_norm *nm, size_t count) {
    for (size_t i = 0; i < count; i++) {
        free(nm[i].str);
        if (nm[i].re) pcre2_code_free(nm[i].re);
    }
    free(nm);
}

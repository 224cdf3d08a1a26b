// Pre-tokenizers: Split (PCRE2 regex or literal, with HF's five delimiter behaviours), ByteLevel and
// Metaspace. Each step turns the list of pieces into a finer one.
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"

// HF runs its regexes with Oniguruma, whose \s is the Unicode White_Space property. PCRE2's \s (with
// PCRE2_UCP) also matches U+180E, so \s and \S are rewritten to the property; everything else in the
// patterns tokenizers use (\p{L}, \p{N}, (?i:...), (?!...)) means the same in both engines.
int tk_regex_compile(dt_ctx *ctx, const char *pattern, size_t len, bool literal, pcre2_code **out) {
    tk_buf pat = {0};
    int rc = DT_OK;
    if (literal) {
        rc = tk_buf_put(ctx, &pat, pattern, len);
    } else {
        for (size_t i = 0; i < len && !rc; i++) {
            if (pattern[i] == '\\' && i + 1 < len) {
                char c = pattern[++i];
                if (c == 's') rc = tk_buf_put(ctx, &pat, "\\p{White_Space}", 15);
                else if (c == 'S') rc = tk_buf_put(ctx, &pat, "\\P{White_Space}", 15);
                else rc = tk_buf_put(ctx, &pat, pattern + i - 1, 2);
            } else {
                rc = tk_buf_put(ctx, &pat, pattern + i, 1);
            }
        }
    }
    if (rc) {
        tk_buf_free(&pat);
        return rc;
    }
    int err;
    PCRE2_SIZE at;
    // PCRE2 refuses LITERAL with UCP or NEVER_BACKSLASH_C. NEVER_BACKSLASH_C: \C matches one byte even
    // in UTF mode, so a match could end inside a character; pieces, normalized text and the next regex's
    // input (matched with PCRE2_NO_UTF_CHECK) must stay valid UTF-8, so a pattern using it is refused.
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(pat.p ? pat.p : ""), pat.n, opts, &err, &at, NULL);
    tk_buf_free(&pat);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return dt_fail(ctx, DT_EINPUT, "regex /%.*s/: %s at offset %zu", (int)(len > 200 ? 200 : len), pattern,
                       (const char *)msg, (size_t)at);
    }
    // JIT makes matching several times faster; without JIT support pcre2_match interprets instead.
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    *out = re;
    return DT_OK;
}

static int push_piece(dt_ctx *ctx, tk_work *w, int to, size_t *n, const char *p, size_t len) {
    if (len == 0) return DT_OK; // HF drops empty splits
    int rc = tk_grow(ctx, (void **)&w->pc[to], &w->pc_cap[to], *n + 1, sizeof(tk_piece));
    if (rc) return rc;
    w->pc[to][(*n)++] = (tk_piece){p, len};
    return DT_OK;
}

int tk_regex_find(dt_ctx *ctx, const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, size_t *pos,
                  size_t *ms, size_t *me, bool *found) {
    *found = false;
    if (*pos > n) return DT_OK;
    int r = pcre2_match(re, (PCRE2_SPTR)s, n, *pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (r == PCRE2_ERROR_NOMATCH) return DT_OK;
    if (r < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(r, msg, sizeof msg);
        return dt_fail(ctx, DT_EINTERNAL, "tokenizer: regex match failed: %s", (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    *found = true;
    size_t adv = 1;
    if (*me == *ms && *me < n) tk_utf8_next(s + *me, n - *me, &adv);
    *pos = *me + (*me == *ms ? adv : 0);
    return DT_OK;
}

// Collects the matches of one piece as alternating segments: id 1 for a match, 0 for text between.
static int split_segments(dt_ctx *ctx, tk_work *w, const tk_pre *st, const char *s, size_t n, size_t *count) {
    size_t k = 0, prev = 0, pos = 0, ms, me;
    bool found;
    int rc;
    while (!(rc = tk_regex_find(ctx, st->re, w->md, s, n, &pos, &ms, &me, &found)) && found) {
        if ((rc = tk_grow(ctx, (void **)&w->ms, &w->ms_cap, k + 2, sizeof *w->ms))) return rc;
        if (ms > prev) w->ms[k++] = (tk_seg){prev, ms - prev, 0};
        if (me > ms) w->ms[k++] = (tk_seg){ms, me - ms, 1};
        prev = me;
    }
    if (rc) return rc;
    if ((rc = tk_grow(ctx, (void **)&w->ms, &w->ms_cap, k + 1, sizeof *w->ms))) return rc;
    if (prev < n) w->ms[k++] = (tk_seg){prev, n - prev, 0};
    if (st->invert)
        for (size_t i = 0; i < k; i++) w->ms[i].id ^= 1;
    *count = k;
    return DT_OK;
}

// Applies the delimiter behaviour to the segments, as HF's SplitDelimiterBehavior does.
static int split_piece(dt_ctx *ctx, tk_work *w, const tk_pre *st, const char *s, size_t n, int to, size_t *nout) {
    size_t k;
    int rc = split_segments(ctx, w, st, s, n, &k);
    if (rc) return rc;
    tk_seg *g = w->ms;
    size_t m = 0; // merged segments, written back into g
    bool prev_match = false;
    switch (st->behavior) {
    case TK_SPLIT_REMOVED:
        for (size_t i = 0; i < k; i++)
            if (!g[i].id) g[m++] = g[i];
        break;
    case TK_SPLIT_ISOLATED:
        m = k;
        break;
    case TK_SPLIT_MERGED_PREV: // a match joins the text before it
        for (size_t i = 0; i < k; i++) {
            if (g[i].id && !prev_match && m) g[m - 1].len = g[i].off + g[i].len - g[m - 1].off;
            else g[m++] = g[i];
            prev_match = g[i].id;
        }
        break;
    case TK_SPLIT_MERGED_NEXT: { // a match joins the text after it: walk backwards
        size_t top = k; // merged segments fill g[top..k) from the back
        for (size_t i = k; i-- > 0;) {
            if (g[i].id && !prev_match && top < k) {
                g[top].len += g[top].off - g[i].off;
                g[top].off = g[i].off;
            } else {
                g[--top] = g[i];
            }
            prev_match = g[i].id;
        }
        memmove(g, g + top, (k - top) * sizeof *g);
        m = k - top;
        break;
    }
    case TK_SPLIT_CONTIGUOUS: // runs of matches become one piece
        for (size_t i = 0; i < k; i++) {
            if (m && (bool)g[i].id == prev_match) g[m - 1].len = g[i].off + g[i].len - g[m - 1].off;
            else g[m++] = g[i];
            prev_match = g[i].id;
        }
        break;
    }
    for (size_t i = 0; i < m && !rc; i++) rc = push_piece(ctx, w, to, nout, s + g[i].off, g[i].len);
    return rc;
}

static bool starts_with(const char *s, size_t n, const char *p, size_t pn) {
    return n >= pn && !memcmp(s, p, pn);
}

static int metaspace_piece(dt_ctx *ctx, tk_work *w, const tk_pre *st, const char *s, size_t n, bool first,
                           int to, size_t *nout) {
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    bool starts = starts_with(s, n, st->repl, st->repl_len) || (n && s[0] == ' ');
    bool prepend = !starts && (st->prepend == TK_PREPEND_ALWAYS || (st->prepend == TK_PREPEND_FIRST && first));
    if (!spaces && !prepend) return push_piece(ctx, w, to, nout, s, n);
    size_t len = n + spaces * (st->repl_len - 1) + (prepend ? st->repl_len : 0);
    char *d = tk_arena_alloc(ctx, &w->arena, len), *p = d;
    if (!d) return DT_ENOMEM;
    if (prepend) {
        memcpy(p, st->repl, st->repl_len);
        p += st->repl_len;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(p, st->repl, st->repl_len);
            p += st->repl_len;
        } else {
            *p++ = s[i];
        }
    }
    return push_piece(ctx, w, to, nout, d, len);
}

int tk_pretokenize(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n, bool first,
                   const tk_piece **out, size_t *n_out) {
    int from = 0;
    size_t count = 0;
    int rc = push_piece(ctx, w, from, &count, s, n);
    for (size_t k = 0; k < tok->n_pres && !rc; k++) {
        const tk_pre *st = &tok->pres[k];
        int to = from ^ 1;
        size_t m = 0;
        for (size_t i = 0; i < count && !rc; i++) {
            const char *p = w->pc[from][i].p;
            size_t len = w->pc[from][i].n;
            switch (st->kind) {
            case TK_PRE_SPLIT:
                rc = split_piece(ctx, w, st, p, len, to, &m);
                break;
            case TK_PRE_BYTE_LEVEL: // HF adds the space before its GPT-2 regex splits the piece
                if (st->add_prefix_space && p[0] != ' ') {
                    char *d = tk_arena_alloc(ctx, &w->arena, len + 1);
                    if (!d) return DT_ENOMEM;
                    d[0] = ' ';
                    memcpy(d + 1, p, len);
                    p = d;
                    len++;
                }
                rc = st->re ? split_piece(ctx, w, st, p, len, to, &m) : push_piece(ctx, w, to, &m, p, len);
                break;
            case TK_PRE_METASPACE:
                rc = metaspace_piece(ctx, w, st, p, len, first && i == 0, to, &m);
                break;
            }
        }
        from = to;
        count = m;
    }
    *out = w->pc[from];
    *n_out = count;
    return rc;
}

void tk_pres_free(tk_pre *p, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (p[i].re) pcre2_code_free(p[i].re);
    free(p);
}

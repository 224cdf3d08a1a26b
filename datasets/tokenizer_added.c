// Added tokens: found in the text before the model runs, leftmost-longest like HF's Aho-Corasick
// matcher, with HF's single_word / lstrip / rstrip rules.
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"

static int trie_node(dt_ctx *ctx, tk_trie *t, uint8_t byte, int32_t *out) {
    int rc = tk_grow(ctx, (void **)&t->node, &t->cap, t->n + 1, sizeof *t->node);
    if (rc) return rc;
    t->node[t->n] = (tk_trie_node){byte, -1, -1, -1};
    *out = (int32_t)t->n++;
    return DT_OK;
}

int tk_trie_add(dt_ctx *ctx, tk_trie *t, const char *s, size_t n, int32_t tok) {
    int32_t cur, id;
    int rc;
    if (n == 0) return DT_OK; // HF ignores empty added tokens
    if (!t->n && (rc = trie_node(ctx, t, 0, &cur))) return rc;
    cur = 0;
    t->start[(uint8_t)s[0]] = 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->node[cur].child;
        while (c >= 0 && t->node[c].byte != b) c = t->node[c].sibling;
        if (c < 0) {
            if ((rc = trie_node(ctx, t, b, &id))) return rc;
            t->node[id].sibling = t->node[cur].child;
            t->node[cur].child = id;
            c = id;
        }
        cur = c;
    }
    t->node[cur].tok = tok;
    return DT_OK;
}

void tk_trie_free(tk_trie *t) {
    free(t->node);
    memset(t, 0, sizeof *t);
}

// The longest added token starting at s; returns its index (or -1) and its length in *len.
static int32_t trie_longest(const tk_trie *t, const char *s, size_t n, size_t *len) {
    int32_t cur = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t c = t->node[cur].child;
        while (c >= 0 && t->node[c].byte != (uint8_t)s[i]) c = t->node[c].sibling;
        if (c < 0) break;
        cur = c;
        if (t->node[c].tok >= 0) {
            best = t->node[c].tok;
            *len = i + 1;
        }
    }
    return best;
}

static int push_seg(dt_ctx *ctx, tk_work *w, int which, size_t *k, size_t off, size_t len, int32_t id) {
    int rc = tk_grow(ctx, (void **)&w->seg[which], &w->seg_cap[which], *k + 1, sizeof(tk_seg));
    if (rc) return rc;
    w->seg[which][(*k)++] = (tk_seg){off, len, id};
    return DT_OK;
}

int tk_split_added(dt_ctx *ctx, const dt_tokenizer *tok, const tk_trie *t, tk_work *w, int which,
                   const char *s, size_t n, size_t *n_seg) {
    size_t k = 0, done = 0; // done: the end of the last emitted segment
    int rc = DT_OK;
    for (size_t i = 0; i < n && t->n && !rc;) {
        size_t len = 0;
        int32_t a = t->start[(uint8_t)s[i]] ? trie_longest(t, s + i, n - i, &len) : -1;
        if (a < 0) {
            i++;
            continue;
        }
        const tk_added *at = &tok->added[a];
        size_t start = i, stop = i + len, adv;
        i = stop; // the matcher resumes after this match even when single_word discards it
        if (at->single_word) {
            bool word_before = start > 0 && tk_is_word_char(tk_utf8_prev(s, start, &adv));
            bool word_after = stop < n && tk_is_word_char(tk_utf8_next(s + stop, n - stop, &adv));
            if (word_before || word_after) continue;
        }
        if (at->lstrip) {
            while (start > done && tk_is_white_space(tk_utf8_prev(s, start, &adv))) start -= adv;
        }
        if (at->rstrip) {
            while (stop < n && tk_is_white_space(tk_utf8_next(s + stop, n - stop, &adv))) stop += adv;
            i = stop;
        }
        if (start > done) rc = push_seg(ctx, w, which, &k, done, start - done, -1);
        if (!rc) rc = push_seg(ctx, w, which, &k, start, stop - start, at->id);
        done = stop;
    }
    if (!rc && done < n) rc = push_seg(ctx, w, which, &k, done, n - done, -1);
    *n_seg = k;
    return rc;
}

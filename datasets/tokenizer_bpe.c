// The BPE model: one pre-tokenized piece → ids, the way Hugging Face's BPE::tokenize does it:
// split into characters (bytes for byte-level tokenizers), map unknown characters to <0xXX> byte tokens
// or <unk>, then apply merges lowest rank first.
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"

// Below this many symbols the O(n²) rank scan beats the heap (no heap upkeep, arrays stay in cache).
#define TK_NAIVE_MAX 48

static inline int32_t pair_rank(const tk_pairmap *m, int32_t a, int32_t b, int32_t *id) {
    const tk_pair *p = tk_pairmap_get(m, a, b);
    if (!p) return INT32_MAX;
    *id = p->id;
    return p->rank;
}

size_t tk_bpe_merge_naive(const tk_pairmap *m, int32_t *sym, size_t n, int32_t *aux) {
    if (n < 2) return n;
    int32_t *rank = aux, *nid = aux + n; // rank[i], nid[i]: the merge of sym[i] and sym[i + 1]
    for (size_t i = 0; i + 1 < n; i++) rank[i] = pair_rank(m, sym[i], sym[i + 1], &nid[i]);
    while (n > 1) {
        int32_t best = INT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rank[i] < best) {
                best = rank[i];
                bi = i;
            }
        if (best == INT32_MAX) break;
        sym[bi] = nid[bi];
        size_t tail = n - bi - 2; // symbols after the merged pair
        memmove(sym + bi + 1, sym + bi + 2, tail * sizeof *sym);
        memmove(rank + bi + 1, rank + bi + 2, (tail ? tail - 1 : 0) * sizeof *rank);
        memmove(nid + bi + 1, nid + bi + 2, (tail ? tail - 1 : 0) * sizeof *nid);
        n--;
        if (bi > 0) rank[bi - 1] = pair_rank(m, sym[bi - 1], sym[bi], &nid[bi - 1]);
        if (bi + 1 < n) rank[bi] = pair_rank(m, sym[bi], sym[bi + 1], &nid[bi]);
    }
    return n;
}

// Min-heap of (rank << 32 | position): lowest rank first, then leftmost, as HF's Word::merge_all.
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

size_t tk_bpe_merge_heap(const tk_pairmap *m, int32_t *sym, size_t n, int32_t *aux) {
    if (n < 2) return n;
    int32_t *next = aux, *prev = aux + n; // linked list over positions; -1 ends it
    uint64_t *heap = (uint64_t *)(void *)(aux + 2 * n); // at most n - 1 + 2 (n - 1) entries
    size_t hn = 0;
    int32_t id;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prev[i] = (int32_t)i - 1;
        if (i + 1 < n) {
            int32_t r = pair_rank(m, sym[i], sym[i + 1], &id);
            if (r != INT32_MAX) heap_push(heap, &hn, (uint64_t)r << 32 | i);
        }
    }
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        int32_t r = (int32_t)(top >> 32), pos = (int32_t)(uint32_t)top;
        // Skip entries made stale by earlier merges: the pair at pos must still have this rank.
        if (sym[pos] < 0 || next[pos] < 0) continue;
        int32_t right = next[pos];
        if (pair_rank(m, sym[pos], sym[right], &id) != r) continue;
        sym[pos] = id;
        sym[right] = -1;
        next[pos] = next[right];
        if (next[pos] >= 0) prev[next[pos]] = pos;
        if (prev[pos] >= 0) {
            int32_t p = prev[pos], r2 = pair_rank(m, sym[p], sym[pos], &id);
            if (r2 != INT32_MAX) heap_push(heap, &hn, (uint64_t)r2 << 32 | (uint32_t)p);
        }
        if (next[pos] >= 0) {
            int32_t r2 = pair_rank(m, sym[pos], sym[next[pos]], &id);
            if (r2 != INT32_MAX) heap_push(heap, &hn, (uint64_t)r2 << 32 | (uint32_t)pos);
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[k++] = sym[i];
    return k;
}

// Looks a byte-level piece up as one vocabulary string (its bytes spelled as GPT-2 characters).
static int32_t whole_word_id(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n) {
    if (!tok->byte_level) return tk_strmap_get(&tok->vocab, s, n);
    w->word.n = 0;
    if (tk_buf_reserve(ctx, &w->word, 2 * n)) return -2;
    for (size_t i = 0; i < n; i++)
        w->word.n += (size_t)tk_utf8_put(tok->byte_to_cp[(unsigned char)s[i]], w->word.p + w->word.n);
    return tk_strmap_get(&tok->vocab, w->word.p, w->word.n);
}

// Splits s into its first symbols (at most n of them) and returns their count.
static size_t initial_symbols(const dt_tokenizer *tok, int32_t *sym, const char *s, size_t n) {
    size_t k = 0;
    bool last_unk = false;
    for (size_t i = 0, adv; i < n; i += adv) {
        int32_t id;
        if (tok->byte_level) {
            adv = 1;
            id = tok->byte_id[(unsigned char)s[i]];
        } else {
            tk_utf8_next(s + i, n - i, &adv);
            id = adv == 1 && tok->byte_id[(unsigned char)s[i]] >= 0 ? tok->byte_id[(unsigned char)s[i]]
                                                                    : tk_strmap_get(&tok->vocab, s + i, adv);
        }
        if (id >= 0) {
            sym[k++] = id;
            last_unk = false;
            continue;
        }
        if (tok->byte_fallback) {
            bool all = true;
            for (size_t b = 0; b < adv; b++) all = all && tok->fallback_id[(unsigned char)s[i + b]] >= 0;
            if (all) {
                for (size_t b = 0; b < adv; b++) sym[k++] = tok->fallback_id[(unsigned char)s[i + b]];
                last_unk = false;
                continue;
            }
        }
        // HF drops characters it cannot map when the model has no unk token.
        if (tok->unk_id < 0) continue;
        if (!(tok->fuse_unk && last_unk)) sym[k++] = tok->unk_id;
        last_unk = true;
    }
    return k;
}

int tk_bpe_piece(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n, dt_ids *ids) {
    if (n == 0) return DT_OK;
    // A piece of n bytes never has more than n ids (n + 3 with byte fallback of one 4-byte character).
    int rc = tk_grow(ctx, (void **)&w->sym, &w->sym_cap, n + 4, sizeof *w->sym);
    if (rc) return rc;
    uint64_t h = 0;
    if (!w->shard) w->shard = tk_cache_shard_of_thread(&tok->cache);
    if (n <= TK_CACHE_KEY) {
        h = tk_hash(s, n);
        int k = tk_cache_get(w->shard, h, s, n, w->sym, w->sym_cap);
        if (k >= 0) return dt_ids_append(ctx, ids, w->sym, (size_t)k);
    }
    size_t count = 0;
    int32_t whole = -1;
    if (tok->ignore_merges && (whole = whole_word_id(ctx, tok, w, s, n)) == -2) return DT_ENOMEM;
    if (whole >= 0) {
        w->sym[0] = whole;
        count = 1;
    } else {
        count = initial_symbols(tok, w->sym, s, n);
        if ((rc = tk_grow(ctx, (void **)&w->aux, &w->aux_cap, 8 * count, sizeof *w->aux))) return rc;
        count = count <= TK_NAIVE_MAX ? tk_bpe_merge_naive(&tok->merges, w->sym, count, w->aux)
                                      : tk_bpe_merge_heap(&tok->merges, w->sym, count, w->aux);
    }
    if (n <= TK_CACHE_KEY) tk_cache_put(w->shard, h, s, n, w->sym, count);
    return dt_ids_append(ctx, ids, w->sym, count);
}

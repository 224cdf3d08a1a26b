// Hash maps of the tokenizer: token string → id, merge pair → (rank, id), and the shared word cache.
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"

// ---- string → id

static uint32_t slot_hash(uint64_t h) { return (uint32_t)(h >> 32) | 1; } // never 0, which marks empty

static int strmap_rehash(dt_ctx *ctx, tk_strmap *m, size_t slots) {
    tk_slot *slot = calloc(slots, sizeof *slot);
    if (!slot) return dt_fail(ctx, DT_ENOMEM, "tokenizer: out of memory for a %zu-slot map", slots);
    size_t mask = slots - 1;
    for (size_t k = 0; m->slot && k <= m->mask; k++) {
        if (!m->slot[k].hash) continue;
        size_t i = (size_t)tk_hash(m->arena + m->slot[k].off, m->slot[k].len) & mask;
        while (slot[i].hash) i = (i + 1) & mask;
        slot[i] = m->slot[k];
    }
    free(m->slot);
    m->slot = slot;
    m->mask = mask;
    return DT_OK;
}

int tk_strmap_init(dt_ctx *ctx, tk_strmap *m, size_t expected, size_t expected_bytes) {
    memset(m, 0, sizeof *m);
    size_t slots = 16;
    while (slots < 2 * expected) slots *= 2;
    int rc = tk_grow(ctx, (void **)&m->arena, &m->arena_cap, expected_bytes ? expected_bytes : 1, 1);
    return rc ? rc : strmap_rehash(ctx, m, slots);
}

static size_t strmap_find(const tk_strmap *m, uint64_t h, const char *key, size_t len) {
    uint32_t hi = slot_hash(h);
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        const tk_slot *x = &m->slot[i];
        if (!x->hash || (x->hash == hi && x->len == len && !memcmp(m->arena + x->off, key, len))) return i;
    }
}

int tk_strmap_put(dt_ctx *ctx, tk_strmap *m, const char *key, size_t len, int32_t id) {
    if (len > UINT32_MAX || m->arena_len + len + 1 > UINT32_MAX)
        return dt_fail(ctx, DT_EINPUT, "tokenizer: vocabulary strings exceed 4 GiB");
    uint64_t h = tk_hash(key, len);
    size_t i = strmap_find(m, h, key, len);
    if (m->slot[i].hash) {
        m->slot[i].id = id;
        return DT_OK;
    }
    int rc = tk_grow(ctx, (void **)&m->arena, &m->arena_cap, m->arena_len + len + 1, 1);
    if (rc) return rc;
    memcpy(m->arena + m->arena_len, key, len);
    m->arena[m->arena_len + len] = 0;
    m->slot[i] = (tk_slot){slot_hash(h), (uint32_t)m->arena_len, (uint32_t)len, id};
    m->arena_len += len + 1;
    m->n++;
    // Keep the load factor under 1/2 so probes stay short.
    if (2 * m->n > m->mask + 1) return strmap_rehash(ctx, m, 2 * (m->mask + 1));
    return DT_OK;
}

int32_t tk_strmap_get(const tk_strmap *m, const char *key, size_t len) {
    if (!m->slot) return -1;
    size_t i = strmap_find(m, tk_hash(key, len), key, len);
    return m->slot[i].hash ? m->slot[i].id : -1;
}

void tk_strmap_free(tk_strmap *m) {
    free(m->arena);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

// ---- merge pairs (fixed size: the merges list is known before the map is built)

int tk_pairmap_init(dt_ctx *ctx, tk_pairmap *m, size_t expected) {
    size_t slots = 16;
    int bits = 4;
    while (slots < 2 * expected) {
        slots *= 2;
        bits++;
    }
    m->slot = malloc(slots * sizeof *m->slot);
    if (!m->slot) return dt_fail(ctx, DT_ENOMEM, "tokenizer: out of memory for %zu merges", expected);
    for (size_t i = 0; i < slots; i++) m->slot[i].key = UINT64_MAX;
    m->mask = slots - 1;
    m->shift = 64 - bits;
    return DT_OK;
}

void tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);
    while (m->slot[i].key != UINT64_MAX && m->slot[i].key != key) i = (i + 1) & m->mask;
    m->slot[i] = (tk_pair){key, rank, id};
}

void tk_pairmap_free(tk_pairmap *m) {
    free(m->slot);
    memset(m, 0, sizeof *m);
}

// ---- word cache. A slot is overwritten by the next word that hashes to it; the cache only ever holds
// correct results, so a miss costs one BPE and nothing else. Any thread may use any shard (the mutex
// keeps that correct); the thread → shard mapping only keeps them apart.

// Entry layout: header, ids (int32, aligned), then the key bytes.
static int32_t *entry_ids(tk_cache_entry *e) { return (int32_t *)(void *)(e + 1); }
static char *entry_key(tk_cache_entry *e) { return (char *)(entry_ids(e) + e->nids); }
static size_t slot_of(uint64_t hash, size_t klen) {
    return (size_t)hash & (klen > TK_CACHE_SMALL ? TK_CACHE_BIG_SLOTS - 1 : TK_CACHE_SLOTS - 1);
}

int tk_cache_init(dt_ctx *ctx, tk_cache *c) {
    c->shards = aligned_alloc(64, TK_CACHE_SHARDS * sizeof *c->shards);
    if (!c->shards) return dt_fail(ctx, DT_ENOMEM, "tokenizer: out of memory for the word cache");
    for (int i = 0; i < TK_CACHE_SHARDS; i++) {
        c->shards[i].slots = NULL;
        c->shards[i].filled = NULL;
        c->shards[i].n_filled = 0;
        pthread_mutex_init(&c->shards[i].lock, NULL);
    }
    return DT_OK;
}

void tk_cache_free(tk_cache *c) {
    if (!c->shards) return;
    for (int i = 0; i < TK_CACHE_SHARDS; i++) {
        tk_cache_shard *s = &c->shards[i];
        pthread_mutex_destroy(&s->lock);
        for (uint32_t k = 0; k < s->n_filled; k++) free(s->slots[s->filled[k]]);
        free(s->slots);
        free(s->filled);
    }
    free(c->shards);
    c->shards = NULL;
}

tk_cache_shard *tk_cache_shard_of_thread(const tk_cache *c) {
    pthread_t self = pthread_self();
    return &c->shards[tk_hash(&self, sizeof self) % TK_CACHE_SHARDS];
}

int tk_cache_get(tk_cache_shard *c, uint64_t hash, const char *key, size_t klen, int32_t *ids, size_t cap) {
    size_t i = slot_of(hash, klen);
    int n = -1;
    pthread_mutex_lock(&c->lock);
    tk_cache_entry *e = c->slots ? c->slots[i] : NULL;
    if (e && e->hash == hash && e->klen == klen && e->nids <= cap && !memcmp(entry_key(e), key, klen)) {
        n = (int)e->nids;
        memcpy(ids, entry_ids(e), e->nids * sizeof *ids);
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

void tk_cache_put(tk_cache_shard *c, uint64_t hash, const char *key, size_t klen, const int32_t *ids, size_t n) {
    if (klen == 0 || klen > TK_CACHE_KEY || n > TK_CACHE_KEY / 4) return;
    tk_cache_entry *e = malloc(sizeof *e + n * sizeof *ids + klen);
    if (!e) return; // a cache that cannot grow just misses
    *e = (tk_cache_entry){hash, (uint32_t)klen, (uint32_t)n};
    memcpy(entry_ids(e), ids, n * sizeof *ids);
    memcpy(entry_key(e), key, klen);
    size_t i = slot_of(hash, klen);
    pthread_mutex_lock(&c->lock);
    if (!c->slots) {
        c->slots = calloc(TK_CACHE_SLOTS, sizeof *c->slots);
        c->filled = malloc(TK_CACHE_SLOTS * sizeof *c->filled);
        if (!c->slots || !c->filled) { // a cache that cannot grow just misses
            free(c->slots);
            free(c->filled);
            c->slots = NULL;
            c->filled = NULL;
        }
    }
    tk_cache_entry *drop = e; // what to free: the replaced entry, or e itself when nothing can hold it
    if (c->slots) {
        drop = c->slots[i];
        if (!drop) c->filled[c->n_filled++] = (uint16_t)i; // each slot enters the list once: slots are never emptied
        c->slots[i] = e;
    }
    pthread_mutex_unlock(&c->lock);
    free(drop);
}

#include "autograd/arena.h"
#include <stdlib.h>
#include "autograd/backend.h"

#define ALIGN 64
#define MIN_CHUNK ((size_t)16 << 20)

static dt_arena_chunk *chunk_new(dt_arena *a, size_t cap) {
    dt_arena_chunk *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->base = cap ? (a->be ? a->be->alloc(a->be, cap) : malloc(cap)) : NULL;
    if (cap && !c->base) { free(c); return NULL; }
    c->cap = cap;
    c->used = 0;
    c->next = NULL;
    return c;
}

static void chunk_free(dt_arena *a, dt_arena_chunk *c) {
    if (c->base && a->be) a->be->free(a->be, c->base);
    else free(c->base);
    free(c);
}

int dt_arena_init(dt_arena *a, size_t cap, const struct dt_backend *be) {
    a->be = be;
    a->in_use = a->peak = 0;
    a->grow = MIN_CHUNK;
    a->first = a->head = chunk_new(a, cap);
    return a->first ? 0 : -1;
}

void *dt_arena_alloc(dt_arena *a, size_t bytes) {
    bytes = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    dt_arena_chunk *c = a->head;
    while (c->used + bytes > c->cap) {
        if (c->next) { // a chunk left over from before a release: reuse it
            c = a->head = c->next;
            c->used = 0;
            continue;
        }
        size_t cap = bytes > a->grow ? bytes : a->grow;
        dt_arena_chunk *n = chunk_new(a, cap);
        if (!n) return NULL;
        c->next = n;
        a->head = c = n;
        a->grow *= 2;
    }
    void *p = c->base + c->used;
    c->used += bytes;
    a->in_use += bytes;
    if (a->in_use > a->peak) a->peak = a->in_use;
    return p;
}

void dt_arena_reset(dt_arena *a) {
    if (a->first->next) {
        // The last step needed more than one chunk: replace them all by one chunk of the peak size
        // (plus the alignment slack of a fresh start), so later steps fit in one contiguous block and
        // never allocate.
        size_t total = a->peak + ALIGN;
        for (dt_arena_chunk *c = a->first, *n; c; c = n) { n = c->next; chunk_free(a, c); }
        a->first = chunk_new(a, total);
        if (!a->first) a->first = chunk_new(a, 0); // allocation failed: start empty, next alloc retries
    }
    a->head = a->first;
    a->first->used = 0;
    a->in_use = 0;
}

dt_arena_mark dt_arena_get_mark(const dt_arena *a) {
    return (dt_arena_mark){a->head, a->head->used, a->in_use};
}

void dt_arena_release(dt_arena *a, dt_arena_mark m) {
    a->head = m.chunk;
    a->head->used = m.used;
    a->in_use = m.in_use;
}

void dt_arena_free(dt_arena *a) {
    for (dt_arena_chunk *c = a->first, *n; c; c = n) { n = c->next; chunk_free(a, c); }
    a->first = a->head = NULL;
}

size_t dt_arena_capacity(const dt_arena *a) {
    size_t total = 0;
    for (dt_arena_chunk *c = a->first; c; c = c->next) total += c->cap;
    return total;
}

// Bump allocator for per-step activations. Reset each step; memory is kept, so after the first step
// (which sizes it) the training loop allocates nothing. When a step outgrows the arena, extra chunks
// are chained, and the next reset folds them into one block of the total size.
#ifndef DT_ARENA_H
#define DT_ARENA_H
#include <stddef.h>
#include <stdint.h>

typedef struct dt_arena_chunk {
    struct dt_arena_chunk *next;
    size_t cap, used;
    uint8_t *base;
} dt_arena_chunk;

typedef struct dt_arena {
    dt_arena_chunk *head;   // the chunk being filled
    dt_arena_chunk *first;  // the original (largest after folding) chunk
    size_t in_use;          // bytes handed out since the last reset
    size_t peak;            // high-water mark over all steps
    size_t grow;            // size of extra chunks when full
    const struct dt_backend *be; // the device allocator's backend; NULL: host malloc
} dt_arena;

struct dt_backend;
// cap: initial capacity (may be 0: the first step sizes it). be: whose memory (NULL: host malloc).
int dt_arena_init(dt_arena *a, size_t cap, const struct dt_backend *be);
// 64-byte aligned; NULL only when the device allocator fails.
void *dt_arena_alloc(dt_arena *a, size_t bytes);
void dt_arena_reset(dt_arena *a);
// A position in the arena; releasing to it frees everything allocated after it (kept for reuse).
typedef struct { dt_arena_chunk *chunk; size_t used, in_use; } dt_arena_mark;
dt_arena_mark dt_arena_get_mark(const dt_arena *a);
void dt_arena_release(dt_arena *a, dt_arena_mark m);
void dt_arena_free(dt_arena *a);
size_t dt_arena_capacity(const dt_arena *a);

#endif

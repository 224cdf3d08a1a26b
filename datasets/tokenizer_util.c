// Small memory helpers of the tokenizer: growable buffers, a block arena, hashing, reading a file.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"

int tk_grow(dt_ctx *ctx, void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return DT_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return dt_fail(ctx, DT_ENOMEM, "tokenizer: out of memory (%zu bytes)", c * elem);
    *p = q;
    *cap = c;
    return DT_OK;
}

int tk_buf_reserve(dt_ctx *ctx, tk_buf *b, size_t extra) {
    // +1 keeps room for a terminating NUL.
    return tk_grow(ctx, (void **)&b->p, &b->cap, b->n + extra + 1, 1);
}

int tk_buf_put(dt_ctx *ctx, tk_buf *b, const void *s, size_t n) {
    int rc = tk_buf_reserve(ctx, b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return DT_OK;
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

struct tk_block { tk_block *next; size_t used, cap; char data[]; };

char *tk_arena_alloc(dt_ctx *ctx, tk_arena *a, size_t n) {
    tk_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) {
            dt_fail(ctx, DT_ENOMEM, "tokenizer: out of memory (%zu bytes)", cap);
            return NULL;
        }
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

void tk_arena_free(tk_arena *a) {
    for (tk_block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

// A multiply-xorshift hash over 8-byte words; keys are short token strings.
uint64_t tk_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32);
}

int tk_read_file(dt_ctx *ctx, const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(ctx, DT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return dt_fail(ctx, DT_EIO, "%s: cannot seek: %s", path, strerror(errno));
    }
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return dt_fail(ctx, DT_EIO, "%s: cannot read its size: %s", path, strerror(errno));
    }
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return dt_fail(ctx, DT_ENOMEM, "%s: out of memory (%ld bytes)", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    int err = ferror(f);
    fclose(f);
    if (got != (size_t)size || err) {
        free(buf);
        return dt_fail(ctx, DT_EIO, "%s: read %zu of %ld bytes", path, got, size);
    }
    buf[size] = 0;
    *data = buf;
    *len = (size_t)size;
    return DT_OK;
}

void tk_work_free(tk_work *w) {
    tk_buf_free(&w->nb[0]);
    tk_buf_free(&w->nb[1]);
    free(w->u32);
    free(w->seg[0]);
    free(w->seg[1]);
    free(w->pc[0]);
    free(w->pc[1]);
    free(w->ms);
    tk_arena_free(&w->arena);
    if (w->md) pcre2_match_data_free(w->md);
    free(w->sym);
    free(w->aux);
    tk_buf_free(&w->word);
    memset(w, 0, sizeof *w);
}

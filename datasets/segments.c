#include "datasets/segments.h"
#include <stdlib.h>
#include <string.h>

void dt_segs_clear(dt_segs *s) {
    s->len = 0;
    s->n = 0;
}

void dt_segs_free(dt_segs *s) {
    free(s->text);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int push_seg(dt_ctx *ctx, dt_segs *s, dt_seg g) {
    if (s->n == s->vcap) {
        size_t cap = s->vcap ? s->vcap * 2 : 16;
        dt_seg *p = realloc(s->v, cap * sizeof *p);
        if (!p) return dt_fail(ctx, DT_ENOMEM, "out of memory");
        s->v = p;
        s->vcap = cap;
    }
    s->v[s->n++] = g;
    return DT_OK;
}

int dt_segs_text(dt_ctx *ctx, dt_segs *s, const char *text, size_t len, bool trained) {
    if (!len) return DT_OK;
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (s->len + len + 1 > cap) cap *= 2;
        char *p = realloc(s->text, cap);
        if (!p) return dt_fail(ctx, DT_ENOMEM, "out of memory");
        s->text = p;
        s->cap = cap;
    }
    memcpy(s->text + s->len, text, len);
    dt_seg *last = s->n ? &s->v[s->n - 1] : NULL;
    if (last && last->token < 0 && last->trained == trained && last->off + last->len == s->len) {
        last->len += len;
    } else {
        int st = push_seg(ctx, s, (dt_seg){s->len, len, -1, trained});
        if (st) return st;
    }
    s->len += len;
    return DT_OK;
}

int dt_segs_token(dt_ctx *ctx, dt_segs *s, int32_t id, bool trained) {
    return push_seg(ctx, s, (dt_seg){s->len, 0, id, trained});
}

int dt_seg_encoder_init(dt_ctx *ctx, dt_seg_encoder *e, const dt_tokenizer *tok) {
    memset(e, 0, sizeof *e);
    e->tok = tok;
    e->bos = dt_tokenizer_bos_id(tok);
    e->eos = dt_tokenizer_eos_id(tok);
    int st = dt_tokenizer_encode(ctx, tok, "\n", 1, false, &e->nl);
    if (st) return st;
    // Whether the tokenizer adds BOS by itself ("BOS per tokenizer settings"): compare one letter
    // encoded with and without special tokens.
    dt_ids with = {0};
    st = dt_tokenizer_encode(ctx, tok, "a", 1, true, &with);
    if (!st) st = dt_tokenizer_encode(ctx, tok, "a", 1, false, &e->tmp);
    if (!st) e->add_bos = e->bos >= 0 && with.n > e->tmp.n && with.v[0] == e->bos;
    dt_ids_free(&with);
    return st;
}

void dt_seg_encoder_free(dt_seg_encoder *e) {
    dt_ids_free(&e->nl);
    dt_ids_free(&e->tmp);
    free(e->buf);
    memset(e, 0, sizeof *e);
}

static int encode_continuation(dt_ctx *ctx, dt_seg_encoder *e, const char *text, size_t len, dt_ids *out) {
    if (len + 2 > e->buf_cap) {
        size_t cap = e->buf_cap ? e->buf_cap : 256;
        while (len + 2 > cap) cap *= 2;
        char *p = realloc(e->buf, cap);
        if (!p) return dt_fail(ctx, DT_ENOMEM, "out of memory");
        e->buf = p;
        e->buf_cap = cap;
    }
    e->buf[0] = '\n';
    memcpy(e->buf + 1, text, len);
    e->buf[len + 1] = 0;
    dt_ids_clear(out);
    int st = dt_tokenizer_encode(ctx, e->tok, e->buf, len + 1, false, out);
    if (st) return st;
    size_t k = e->nl.n;
    if (k && out->n >= k && !memcmp(out->v, e->nl.v, k * sizeof(int32_t))) {
        memmove(out->v, out->v + k, (out->n - k) * sizeof(int32_t));
        out->n -= k;
        return DT_OK;
    }
    dt_ids_clear(out);
    return dt_tokenizer_encode(ctx, e->tok, text, len, false, out);
}

int dt_segs_encode(dt_ctx *ctx, dt_seg_encoder *e, const dt_segs *s, bool train_all, dt_ids *ids, dt_ids *labels) {
    for (size_t i = 0; i < s->n; i++) {
        const dt_seg *g = &s->v[i];
        bool trained = train_all || g->trained;
        dt_ids_clear(&e->tmp);
        int st;
        if (g->token >= 0) {
            st = dt_ids_push(ctx, &e->tmp, g->token);
        } else {
            bool cont = ids->n > 0 && !dt_tokenizer_is_special(e->tok, ids->v[ids->n - 1]);
            st = cont ? encode_continuation(ctx, e, s->text + g->off, g->len, &e->tmp)
                      : dt_tokenizer_encode(ctx, e->tok, s->text + g->off, g->len, false, &e->tmp);
        }
        if (!st) st = dt_ids_append(ctx, ids, e->tmp.v, e->tmp.n);
        if (!st) st = dt_ids_reserve(ctx, labels, e->tmp.n);
        if (st) return st;
        for (size_t j = 0; j < e->tmp.n; j++) labels->v[labels->n++] = trained ? e->tmp.v[j] : -100;
    }
    return DT_OK;
}

// llama2.c's tokenizer.bin: int32 max_token_length, then per token float score, int32 length, bytes.
// Encoding follows llama2.c's run.c: a " " dummy prefix, one token per UTF-8 character (bytes + 3 when the
// character is missing), then repeatedly merge the adjacent pair whose concatenation has the best score.
// Ids 0, 1, 2 are <unk>, <s> (BOS) and </s> (EOS), as in the Llama 2 SentencePiece vocabulary.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"

int tk_load_llama2c(dt_ctx *ctx, dt_tokenizer *tok, const char *path) {
    char *data;
    size_t len;
    int rc = tk_read_file(ctx, path, &data, &len);
    if (rc) return rc;
    tok->model = TK_MODEL_LLAMA2C;
    int32_t max_len = 0;
    size_t pos = 4, count = 0, cap = 0, off_cap = 0;
    uint32_t *off = NULL; // (count) where each piece starts in tok->pieces
    if (len < 4) rc = dt_fail(ctx, DT_EINPUT, "%s: %zu bytes is too short for a llama2.c tokenizer", path, len);
    else memcpy(&max_len, data, 4);
    if (!rc && (max_len <= 0 || max_len > 1 << 20))
        rc = dt_fail(ctx, DT_EINPUT, "%s: max_token_length %d is not plausible; not a llama2.c tokenizer.bin", path, max_len);
    if (!rc) rc = tk_strmap_init(ctx, &tok->vocab, len / 16 + 16, len / 2 + 16);
    if (!rc) rc = tk_strmap_init(ctx, &tok->added_map, 1, 1);
    while (!rc && pos < len) {
        float score;
        int32_t n;
        if (len - pos < 8) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: token %zu: truncated record at byte %zu", path, count, pos);
            break;
        }
        memcpy(&score, data + pos, 4);
        memcpy(&n, data + pos + 4, 4);
        pos += 8;
        if (n < 0 || n > max_len || (size_t)n > len - pos) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: token %zu: length %d at byte %zu exceeds max_token_length %d or the file",
                         path, count, n, pos - 4, max_len);
            break;
        }
        if (count >= INT32_MAX || tok->pieces.n + (size_t)n + 1 > UINT32_MAX) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: too many tokens", path);
            break;
        }
        if ((rc = tk_grow(ctx, (void **)&tok->scores, &cap, count + 1, sizeof *tok->scores)) ||
            (rc = tk_grow(ctx, (void **)&off, &off_cap, count + 1, sizeof *off)))
            break;
        tok->scores[count] = score;
        off[count] = (uint32_t)tok->pieces.n;
        if ((rc = tk_buf_put(ctx, &tok->pieces, data + pos, (size_t)n)) || (rc = tk_buf_put(ctx, &tok->pieces, "", 1)))
            break;
        // A piece spelled twice keeps its first id for lookups.
        if (tk_strmap_get(&tok->vocab, data + pos, (size_t)n) < 0)
            rc = tk_strmap_put(ctx, &tok->vocab, data + pos, (size_t)n, (int32_t)count);
        pos += (size_t)n;
        count++;
    }
    free(data);
    if (!rc && count < 3)
        rc = dt_fail(ctx, DT_EINPUT, "%s: %zu tokens; a llama2.c vocabulary starts with <unk>, <s>, </s>", path, count);
    if (!rc) {
        tok->n_ids = (int32_t)count;
        tok->id_str = malloc(count * sizeof *tok->id_str);
        tok->special = calloc(count, 1);
        tok->prefix = malloc(sizeof *tok->prefix);
        if (!tok->id_str || !tok->special || !tok->prefix) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    if (!rc) {
        for (size_t i = 0; i < count; i++) tok->id_str[i] = tok->pieces.p + off[i];
        tok->bos = 1;
        tok->eos = 2;
        tok->special[0] = tok->special[1] = tok->special[2] = 1;
        tok->prefix[0] = 1; // llama2.c encodes prompts with BOS and without EOS
        tok->n_prefix = 1;
        tok->space_id = tk_strmap_get(&tok->vocab, " ", 1);
    }
    free(off);
    return rc;
}

// The id of the concatenation of pieces a and b, or -1.
static int pair_id(dt_ctx *ctx, const dt_tokenizer *tok, tk_buf *tmp, int32_t a, int32_t b, int32_t *id) {
    const char *sa = tok->id_str[a], *sb = tok->id_str[b];
    tmp->n = 0;
    int rc = tk_buf_put(ctx, tmp, sa, strlen(sa));
    if (!rc) rc = tk_buf_put(ctx, tmp, sb, strlen(sb));
    *id = rc ? -1 : tk_strmap_get(&tok->vocab, tmp->p, tmp->n);
    return rc;
}

int tk_llama2c_encode(dt_ctx *ctx, const dt_tokenizer *tok, tk_work *w, const char *s, size_t n, dt_ids *ids) {
    if (n == 0) return DT_OK;
    int rc = tk_grow(ctx, (void **)&w->sym, &w->sym_cap, 4 * n + 1, sizeof *w->sym);
    if (!rc) rc = tk_grow(ctx, (void **)&w->aux, &w->aux_cap, 4 * n + 1, sizeof *w->aux);
    if (rc) return rc;
    int32_t *sym = w->sym, *best = w->aux; // best[i]: id of sym[i] + sym[i + 1], or -1
    size_t k = 0;
    if (tok->space_id >= 0) sym[k++] = tok->space_id;
    for (size_t i = 0, adv; i < n; i += adv) {
        tk_utf8_next(s + i, n - i, &adv);
        int32_t id = tk_strmap_get(&tok->vocab, s + i, adv);
        if (id >= 0) {
            sym[k++] = id;
        } else { // byte fallback: the first 3 ids are <unk>, <s>, </s>, then the 256 byte tokens
            for (size_t b = 0; b < adv; b++) {
                int32_t bid = (int32_t)(unsigned char)s[i + b] + 3;
                sym[k++] = bid < tok->n_ids ? bid : 0;
            }
        }
    }
    for (size_t i = 0; i + 1 < k && !rc; i++) rc = pair_id(ctx, tok, &w->word, sym[i], sym[i + 1], &best[i]);
    while (k > 1 && !rc) {
        float top = -1e10f; // llama2.c's starting score
        size_t at = k;
        for (size_t i = 0; i + 1 < k; i++)
            if (best[i] >= 0 && tok->scores[best[i]] > top) {
                top = tok->scores[best[i]];
                at = i;
            }
        if (at == k) break;
        sym[at] = best[at];
        memmove(sym + at + 1, sym + at + 2, (k - at - 2) * sizeof *sym);
        if (k - at > 2) memmove(best + at + 1, best + at + 2, (k - at - 3) * sizeof *best);
        k--;
        if (at > 0) rc = pair_id(ctx, tok, &w->word, sym[at - 1], sym[at], &best[at - 1]);
        if (!rc && at + 1 < k) rc = pair_id(ctx, tok, &w->word, sym[at], sym[at + 1], &best[at]);
    }
    return rc ? rc : dt_ids_append(ctx, ids, sym, k);
}

// As SentencePiece decodes: byte tokens <0xXX> become bytes, and the space of the first piece (the
// dummy prefix) is dropped, at the start and after BOS as llama2.c does.
int tk_llama2c_decode(dt_ctx *ctx, const dt_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                      tk_buf *out) {
    bool at_start = true;
    int rc = DT_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        if (id == tok->bos) at_start = true;
        if (skip_special && tok->special[id]) continue;
        const char *p = tok->id_str[id];
        unsigned v;
        char byte;
        if (strlen(p) == 6 && sscanf(p, "<0x%02X>", &v) == 1) {
            byte = (char)v;
            rc = tk_buf_put(ctx, out, &byte, 1);
        } else {
            if (at_start && id != tok->bos && p[0] == ' ') p++;
            rc = tk_buf_put(ctx, out, p, strlen(p));
        }
        if (id != tok->bos) at_start = false;
    }
    return rc;
}

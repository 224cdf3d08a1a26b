// A tokenizer from a GGUF file's own tokenizer.ggml.* metadata: the inverse of models/gguf_tokenizer.c
// (which writes these keys the way llama.cpp's convert_hf_to_gguf.py does) and a reading of the keys as
// llama.cpp's src/llama-vocab.cpp uses them. The result is an ordinary dt_tokenizer whose steps are
// described as tokenizer.json would describe them (tk_read_pipeline), so encoding runs the HF code path.
//
// tokenizer.ggml.model "gpt2" (byte-level BPE): tokens (GPT-2 byte-level strings), merges "a b" in rank
// order, and tokenizer.ggml.pre naming the pre-tokenizer:
//   llama-bpe, llama3: the Llama 3 split regex (digits in groups of 1-3), ignore_merges as llama.cpp sets
//   qwen2:             the Qwen2 split regex (single digits), after NFC as the Qwen tokenizer.json files do
//                      (llama.cpp itself skips NFC; the two differ only on text that is not NFC already)
//   smollm:            single digits, then GPT-2's ByteLevel regex
//   gpt-2:             GPT-2's ByteLevel regex
// Any other name is refused (naming it): its regex is unknown here.
// tokenizer.ggml.model "llama" (SentencePiece-style BPE over U+2581 with <0xNN> byte fallback): llama.cpp
// merges, among the adjacent symbol pairs whose concatenation is a token, the one whose token has the
// highest score (leftmost on ties). That is BPE with one merge per such pair, ranked by the merged token's
// score: equal scores get equal ranks, and BPE then takes the leftmost, as llama.cpp does. A space is
// put in front of the text and after every special token (tokenizer.ggml.add_space_prefix, default true),
// spaces become U+2581, and decoding strips the one leading space again, all as llama.cpp does.
// Both: token types 3 (control) and 4 (user-defined) are added tokens, matched in the raw text before
// anything else (special when control); type 5 (unused: the [PADn] rows past the real vocabulary) are
// holes, as ids absent from a tokenizer.json are; BOS/EOS are added as tokenizer.ggml.add_bos_token /
// add_eos_token say (absent: llama.cpp's defaults, BOS for "llama" and for the llama3 pre-tokenizer).
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"
#include "models/gguf.h"
#include "models/gguf_tokenizer.h"

// llama.cpp token types (gguf-py TokenType).
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

// More tokens than any real vocabulary (the writer's limit too); keeps every id an int32 with room.
#define MAX_TOKENS (1 << 24)

typedef struct {
    dt_ctx *ctx;
    const dt_gguf_file *f;
    const char *path;
    bool spm;                    // "llama", else "gpt2"
    uint64_t n;                  // tokens
    const dt_gguf_kv *tokens, *types, *scores, *merges;
} gg;

static const dt_gguf_kv *find(const gg *g, const char *key) {
    int64_t i = dt_gguf_find_key(g->f, key);
    return i < 0 ? NULL : &g->f->kvs[i];
}

static bool is_int_type(dt_gguf_type t) {
    return t == DT_GGUF_U8 || t == DT_GGUF_I8 || t == DT_GGUF_U16 || t == DT_GGUF_I16 || t == DT_GGUF_U32 ||
           t == DT_GGUF_I32 || t == DT_GGUF_U64 || t == DT_GGUF_I64;
}

// An array key: elements of the wanted kind (STRING, an integer type, or F32/F64), count n (0: any).
typedef enum { ARR_STR, ARR_INT, ARR_FLOAT } arr_kind;
static int get_array(const gg *g, const char *key, arr_kind kind, uint64_t n, const dt_gguf_kv **out) {
    static const char *const WANT[] = {"strings", "integers", "f32 numbers"};
    const dt_gguf_kv *kv = *out = find(g, key);
    if (!kv) return DT_OK;
    bool ok = kv->type == DT_GGUF_ARRAY &&
              (kind == ARR_STR ? kv->arr_type == DT_GGUF_STRING
               : kind == ARR_INT ? is_int_type(kv->arr_type)
                                 : kv->arr_type == DT_GGUF_F32 || kv->arr_type == DT_GGUF_F64);
    if (!ok)
        return dt_fail(g->ctx, DT_EINPUT, "%s: %s: expected an array of %s, got %s%s%s", g->path, key, WANT[kind],
                       kv->type == DT_GGUF_ARRAY ? "an array of " : "", dt_gguf_type_name(kv->arr_type),
                       kv->type == DT_GGUF_ARRAY ? "" : " (not an array)");
    if (n && kv->n != n)
        return dt_fail(g->ctx, DT_EINPUT, "%s: %s has %llu entries but tokenizer.ggml.tokens has %llu; expected one per token",
                       g->path, key, (unsigned long long)kv->n, (unsigned long long)n);
    return DT_OK;
}

// Text that every later step may treat as UTF-8 and as a C string.
static int check_text(const gg *g, const char *key, uint64_t i, const char *s, uint64_t len) {
    if (memchr(s, 0, len))
        return dt_fail(g->ctx, DT_EINPUT, "%s: %s[%llu] contains a NUL byte", g->path, key, (unsigned long long)i);
    if (tk_utf8_valid_prefix(s, len) != len)
        return dt_fail(g->ctx, DT_EINPUT, "%s: %s[%llu] is not valid UTF-8", g->path, key, (unsigned long long)i);
    return DT_OK;
}

// An optional token id key: absent leaves *id as it is; present, it must name a token.
static int get_id(const gg *g, const char *key, int32_t *id) {
    if (!find(g, key)) return DT_OK;
    int64_t v;
    int rc = dt_gguf_get_int(g->ctx, g->f, key, &v);
    if (rc) return rc;
    if (v < 0 || (uint64_t)v >= g->n)
        return dt_fail(g->ctx, DT_EINPUT, "%s: %s is %lld; expected a token id below %llu (the size of tokenizer.ggml.tokens)",
                       g->path, key, (long long)v, (unsigned long long)g->n);
    *id = (int32_t)v;
    return DT_OK;
}

static int get_flag(const gg *g, const char *key, bool *flag) {
    return find(g, key) ? dt_gguf_get_bool(g->ctx, g->f, key, flag) : DT_OK;
}

// (int64: a hostile u64/i64 type must not wrap into the range 1..6)
static int64_t type_of(const gg *g, uint64_t i) { return g->types ? dt_gguf_kv_int(g->types, i) : TT_NORMAL; }

// ---- the vocabulary: every token's text (id_str), the model's tokens (vocab) and the added ones

static int read_tokens(gg *g, dt_tokenizer *tok) {
    dt_ctx *ctx = g->ctx;
    size_t bytes = 0;
    int32_t top = -1;
    for (uint64_t i = 0; i < g->n; i++) {
        int64_t t = type_of(g, i);
        if (t < TT_NORMAL || t > TT_BYTE)
            return dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.token_type[%llu] is %lld; expected 1 (normal) to 6 (byte)",
                           g->path, (unsigned long long)i, (long long)t);
        int rc = check_text(g, "tokenizer.ggml.tokens", i, g->tokens->strs[i], g->tokens->str_lens[i]);
        if (rc) return rc;
        bytes += g->tokens->str_lens[i] + 1;
        if (t != TT_UNUSED) top = (int32_t)i;
    }
    if (top < 0) return dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.tokens: every token is unused (type 5)", g->path);
    // All texts in one buffer, NUL-terminated, in id order; id_str points into it (reserved first, so the
    // pointers stay valid).
    tok->n_ids = top + 1;
    int rc = tk_buf_reserve(ctx, &tok->pieces, bytes);
    if (!rc && !(tok->id_str = calloc((size_t)tok->n_ids + 1, sizeof *tok->id_str))) rc = DT_ENOMEM;
    if (!rc && !(tok->special = calloc((size_t)tok->n_ids + 1, 1))) rc = DT_ENOMEM;
    size_t n_added = 0;
    for (uint64_t i = 0; i < (uint64_t)tok->n_ids; i++) n_added += type_of(g, i) == TT_CONTROL || type_of(g, i) == TT_USER_DEFINED;
    if (!rc && !(tok->added = calloc(n_added + 1, sizeof *tok->added))) rc = DT_ENOMEM;
    if (rc) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory for %llu tokens", g->path, (unsigned long long)g->n);
    rc = tk_strmap_init(ctx, &tok->vocab, (size_t)tok->n_ids, bytes);
    if (!rc) rc = tk_strmap_init(ctx, &tok->added_map, n_added + 1, 32 * n_added + 16);
    for (int32_t i = 0; i < tok->n_ids && !rc; i++) {
        const char *s = g->tokens->strs[i];
        size_t len = (size_t)g->tokens->str_lens[i];
        int64_t t = type_of(g, (uint64_t)i);
        if (t == TT_UNUSED) continue; // a hole, as an id missing from tokenizer.json
        char *p = tok->pieces.p + tok->pieces.n;
        memcpy(p, s, len + 1);
        tok->pieces.n += len + 1;
        tok->id_str[i] = p;
        if (t != TT_CONTROL && t != TT_USER_DEFINED) {
            // A text spelled twice maps to its last id, as llama.cpp's token_to_id does.
            rc = tk_strmap_put(ctx, &tok->vocab, p, len, i);
            continue;
        }
        // Added tokens match the raw text, as llama.cpp's special-token partition does (the converter
        // stores them pre-normalized).
        tk_added *a = &tok->added[tok->n_added];
        if (!(a->content = malloc(len + 1))) { rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", g->path); break; }
        memcpy(a->content, s, len + 1);
        a->len = len;
        a->id = i;
        a->special = t == TT_CONTROL;
        tok->special[i] = a->special;
        tok->n_added++;
        rc = tk_strmap_put(ctx, &tok->added_map, a->content, len, i);
        if (!rc) rc = tk_trie_add(ctx, &tok->raw, a->content, len, (int32_t)(a - tok->added));
    }
    return rc;
}

// ---- byte-level BPE merges, as stored

static int read_merges(gg *g, dt_tokenizer *tok) {
    dt_ctx *ctx = g->ctx;
    const dt_gguf_kv *m = g->merges;
    if (!m) return dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.model is gpt2 but tokenizer.ggml.merges is missing", g->path);
    if (m->n > (uint64_t)INT32_MAX)
        return dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.merges has %llu entries, too many", g->path, (unsigned long long)m->n);
    int rc = tk_pairmap_init(ctx, &tok->merges, (size_t)m->n);
    for (uint64_t r = 0; r < m->n && !rc; r++) {
        const char *s = m->strs[r];
        size_t len = (size_t)m->str_lens[r];
        if ((rc = check_text(g, "tokenizer.ggml.merges", r, s, len))) break;
        // The first space after the first byte separates the two tokens, as llama.cpp splits them.
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.merges[%llu] '%.80s': expected two tokens separated by a space",
                         g->path, (unsigned long long)r, s);
            break;
        }
        size_t la = (size_t)(sp - s), lb = len - la - 1;
        int32_t a = tk_strmap_get(&tok->vocab, s, la), b = tk_strmap_get(&tok->vocab, sp + 1, lb), ab = -1;
        if (a >= 0 && b >= 0) {
            char stack[256], *joined = la + lb <= sizeof stack ? stack : malloc(la + lb);
            if (!joined) { rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", g->path); break; }
            memcpy(joined, s, la);
            memcpy(joined + la, sp + 1, lb);
            ab = tk_strmap_get(&tok->vocab, joined, la + lb);
            if (joined != stack) free(joined);
        }
        if (a < 0 || b < 0 || ab < 0) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.merges[%llu] '%.80s': %s is not a token of tokenizer.ggml.tokens",
                         g->path, (unsigned long long)r, s,
                         a < 0 ? "the left part" : b < 0 ? "the right part" : "the merged text");
            break;
        }
        tk_pairmap_put(&tok->merges, a, b, (int32_t)r, ab);
    }
    return rc;
}

// ---- SentencePiece-style merges, from the scores

typedef struct { float score; int32_t a, b, id; } spm_pair;

static int by_score(const void *x, const void *y) {
    const spm_pair *p = x, *q = y;
    if (p->score != q->score) return p->score > q->score ? -1 : 1;
    return p->id < q->id ? -1 : p->id > q->id; // any fixed order: equal scores get one rank anyway
}

// Every split of a normal token's text into two tokens, between characters; out NULL: only counts them.
static size_t collect_pairs(const gg *g, const dt_tokenizer *tok, spm_pair *out) {
    size_t k = 0;
    const tk_strmap *v = &tok->vocab;
    for (size_t s = 0; s <= v->mask; s++) {
        const tk_slot *x = &v->slot[s];
        if (!x->hash || type_of(g, (uint64_t)x->id) != TT_NORMAL) continue;
        const char *t = tk_strmap_key(v, x);
        size_t cut, adv;
        tk_utf8_next(t, x->len, &cut); // token texts were checked to be UTF-8
        for (; cut < x->len; cut += adv) {
            int32_t a = tk_strmap_get(v, t, cut), b = tk_strmap_get(v, t + cut, x->len - cut);
            if (a >= 0 && b >= 0) {
                float score = g->scores ? (float)dt_gguf_kv_float(g->scores, (uint64_t)x->id) : 0.0f;
                if (out) out[k] = (spm_pair){score, a, b, x->id};
                k++;
            }
            tk_utf8_next(t + cut, x->len - cut, &adv);
        }
    }
    return k;
}

static int derive_merges(gg *g, dt_tokenizer *tok) {
    dt_ctx *ctx = g->ctx;
    for (uint64_t i = 0; g->scores && i < g->n; i++)
        if (!isfinite(dt_gguf_kv_float(g->scores, i)))
            return dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.scores[%llu] is not a finite number", g->path, (unsigned long long)i);
    size_t n = collect_pairs(g, tok, NULL); // count, then fill one allocation
    spm_pair *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory for %zu merges", g->path, n);
    collect_pairs(g, tok, p);
    qsort(p, n, sizeof *p, by_score);
    int rc = tk_pairmap_init(ctx, &tok->merges, n);
    int32_t rank = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (i && p[i].score != p[i - 1].score) rank++;
        tk_pairmap_put(&tok->merges, p[i].a, p[i].b, rank, p[i].id);
    }
    free(p);
    return rc;
}

// ---- the pipelines, as tokenizer.json would spell them

static json_t *byte_level(bool use_regex) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex",
                     use_regex);
}

static json_t *split_then_bytes(const char *regex) {
    return json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, o]}", "type", "Sequence", "pretokenizers", "type", "Split",
                     "pattern", "Regex", regex, "behavior", "Isolated", "invert", 0, byte_level(false));
}

// The known pre-tokenizer names of byte-level models.
static int byte_level_pipeline(gg *g, dt_tokenizer *tok, const char *pre, json_t **norm, json_t **pt) {
    *norm = NULL;
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")) {
        *pt = split_then_bytes(DT_GGUF_PRE_LLAMA3_REGEX);
        tok->ignore_merges = true; // llama.cpp sets it for this pre-tokenizer, as Llama 3's tokenizer.json does
    } else if (!strcmp(pre, "qwen2")) {
        *pt = split_then_bytes(DT_GGUF_PRE_QWEN2_REGEX);
        *norm = json_pack("{s:s}", "type", "NFC");
    } else if (!strcmp(pre, "smollm")) {
        *pt = json_pack("{s:s, s:[{s:s, s:b}, o]}", "type", "Sequence", "pretokenizers", "type", "Digits",
                        "individual_digits", 1, byte_level(true));
    } else if (!strcmp(pre, "gpt-2")) {
        *pt = byte_level(true);
    } else {
        return dt_fail(g->ctx, DT_EUNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not supported (known: llama-bpe, llama3, qwen2, "
                       "smollm, gpt-2); give a tokenizer folder (model.tokenizer, --tokenizer)", g->path, pre);
    }
    return *pt ? DT_OK : dt_fail(g->ctx, DT_ENOMEM, "%s: out of memory", g->path);
}

static int spm_pipeline(gg *g, bool space_prefix, json_t **norm, json_t **dec) {
    const char *meta = "\xE2\x96\x81";
    json_t *replace = json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "String", " ", "content", meta);
    *norm = space_prefix ? json_pack("{s:s, s:[{s:s, s:s}, o]}", "type", "Sequence", "normalizers", "type", "Prepend",
                                     "prepend", meta, replace)
                         : replace;
    // llama.cpp drops the leading space of the first piece when it added one.
    *dec = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}]}", "type", "Sequence", "decoders", "type", "Replace",
                     "pattern", "String", meta, "content", " ", "type", "ByteFallback", "type", "Fuse");
    if (*dec && space_prefix)
        json_array_append_new(json_object_get(*dec, "decoders"),
                              json_pack("{s:s, s:s, s:i, s:i}", "type", "Strip", "content", " ", "start", 1, "stop", 0));
    return *norm && *dec ? DT_OK : dt_fail(g->ctx, DT_ENOMEM, "%s: out of memory", g->path);
}

// ---- special ids and the chat template

static int read_specials(gg *g, dt_tokenizer *tok, const char *pre) {
    int rc = get_id(g, "tokenizer.ggml.bos_token_id", &tok->bos);
    if (!rc) rc = get_id(g, "tokenizer.ggml.eos_token_id", &tok->eos);
    if (!rc) rc = get_id(g, "tokenizer.ggml.padding_token_id", &tok->pad);
    if (!rc) rc = get_id(g, "tokenizer.ggml.unknown_token_id", &tok->unk_id);
    if (!rc) rc = get_id(g, "tokenizer.ggml.eot_token_id", &tok->eot);
    // llama.cpp's defaults when the file does not say.
    bool add_bos = g->spm || !strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3"), add_eos = false;
    if (!rc) rc = get_flag(g, "tokenizer.ggml.add_bos_token", &add_bos);
    if (!rc) rc = get_flag(g, "tokenizer.ggml.add_eos_token", &add_eos);
    if (rc) return rc;
    // An id that names an unused row (a hole) cannot be put around a sequence, produced or decoded.
    const struct { const char *key; int32_t id; } ids[] = {
        {"tokenizer.ggml.bos_token_id", tok->bos}, {"tokenizer.ggml.eos_token_id", tok->eos},
        {"tokenizer.ggml.padding_token_id", tok->pad}, {"tokenizer.ggml.unknown_token_id", tok->unk_id},
        {"tokenizer.ggml.eot_token_id", tok->eot}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i].id >= tok->n_ids || (ids[i].id >= 0 && !tok->id_str[ids[i].id]))
            return dt_fail(g->ctx, DT_EINPUT, "%s: %s %d names an unused token (type 5)", g->path, ids[i].key, ids[i].id);
    if (add_bos && tok->bos >= 0) {
        if (!(tok->prefix = malloc(sizeof *tok->prefix))) return dt_fail(g->ctx, DT_ENOMEM, "%s: out of memory", g->path);
        tok->prefix[tok->n_prefix++] = tok->bos;
    }
    if (add_eos && tok->eos >= 0) {
        if (!(tok->suffix = malloc(sizeof *tok->suffix))) return dt_fail(g->ctx, DT_ENOMEM, "%s: out of memory", g->path);
        tok->suffix[tok->n_suffix++] = tok->eos;
    }
    return DT_OK;
}

static int read_chat_template(gg *g, dt_tokenizer *tok) {
    const dt_gguf_kv *kv = find(g, "tokenizer.chat_template");
    if (!kv) return DT_OK;
    if (kv->type != DT_GGUF_STRING)
        return dt_fail(g->ctx, DT_EINPUT, "%s: tokenizer.chat_template: expected a string, got %s", g->path,
                       kv->type == DT_GGUF_ARRAY ? "an array" : dt_gguf_type_name(kv->type));
    int rc = check_text(g, "tokenizer.chat_template", 0, kv->strs[0], kv->str_lens[0]);
    if (!rc && !(tok->chat_template = strdup(kv->strs[0]))) rc = dt_fail(g->ctx, DT_ENOMEM, "%s: out of memory", g->path);
    return rc;
}

int tk_load_gguf(dt_ctx *ctx, dt_tokenizer *tok, const dt_gguf_file *f) {
    gg g = {.ctx = ctx, .f = f, .path = f->path};
    tok->model = TK_MODEL_BPE;
    tok->from_gguf = true;
    const char *model, *pre = NULL;
    if (!find(&g, "tokenizer.ggml.model"))
        return dt_fail(ctx, DT_EINPUT, "%s: the file carries no tokenizer (no tokenizer.ggml.model key); give a tokenizer "
                       "folder (model.tokenizer, --tokenizer)", g.path);
    int rc = dt_gguf_get_str(ctx, f, "tokenizer.ggml.model", &model);
    if (rc) return rc;
    if (!strcmp(model, "llama")) g.spm = true;
    else if (strcmp(model, "gpt2"))
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: tokenizer.ggml.model '%s' is not supported (gpt2: byte-level BPE, llama: "
                       "SentencePiece-style BPE); give a tokenizer folder (model.tokenizer, --tokenizer)", g.path, model);
    if (!g.spm) {
        if (!find(&g, "tokenizer.ggml.pre"))
            return dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.model is gpt2 but tokenizer.ggml.pre (the pre-tokenizer) is "
                           "missing; give a tokenizer folder (model.tokenizer, --tokenizer)", g.path);
        if ((rc = dt_gguf_get_str(ctx, f, "tokenizer.ggml.pre", &pre))) return rc;
    }
    // SentencePiece-style models ignore tokenizer.ggml.pre in llama.cpp ("default"), and so do we.
    if ((rc = get_array(&g, "tokenizer.ggml.tokens", ARR_STR, 0, &g.tokens))) return rc;
    if (!g.tokens) return dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.tokens is missing", g.path);
    g.n = g.tokens->n;
    if (g.n == 0 || g.n > MAX_TOKENS)
        return dt_fail(ctx, DT_EINPUT, "%s: tokenizer.ggml.tokens has %llu entries; expected 1 to %d", g.path,
                       (unsigned long long)g.n, MAX_TOKENS);
    if ((rc = get_array(&g, "tokenizer.ggml.token_type", ARR_INT, g.n, &g.types)) ||
        (rc = get_array(&g, "tokenizer.ggml.scores", ARR_FLOAT, g.n, &g.scores)) ||
        (!g.spm && (rc = get_array(&g, "tokenizer.ggml.merges", ARR_STR, 0, &g.merges))))
        return rc;
    bool space_prefix = true;
    if (g.spm && (rc = get_flag(&g, "tokenizer.ggml.add_space_prefix", &space_prefix))) return rc;
    json_t *norm = NULL, *pt = NULL, *dec = NULL;
    rc = read_tokens(&g, tok);
    if (!rc) rc = g.spm ? spm_pipeline(&g, space_prefix, &norm, &dec) : byte_level_pipeline(&g, tok, pre, &norm, &pt);
    // (All of ByteLevel's fields, as Llama 3's tokenizer.json spells this decoder: the decoder ignores them,
    // but the tokenizer.json written back from this description names them.)
    if (!rc && !g.spm && !(dec = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                                           "trim_offsets", 1, "use_regex", 1)))
        rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", g.path);
    if (!rc) rc = tk_read_pipeline(ctx, tok, norm, pt, dec, g.path);
    // Kept for writing the tokenizer back as tokenizer.json (dt_tokenizer_hf_json); freed with tok.
    tok->gguf_desc[0] = norm;
    tok->gguf_desc[1] = pt;
    tok->gguf_desc[2] = dec;
    if (!rc && g.spm) {
        // llama.cpp falls back to <0xNN> for a character that is no token; HF's llama converter also
        // fuses unknown characters.
        tok->byte_fallback = tok->fuse_unk = true;
        rc = derive_merges(&g, tok);
    } else if (!rc) {
        rc = read_merges(&g, tok);
    }
    if (!rc) {
        tk_model_tables(tok);
        rc = read_specials(&g, tok, pre ? pre : "");
    }
    if (!rc) rc = read_chat_template(&g, tok);
    return rc;
}

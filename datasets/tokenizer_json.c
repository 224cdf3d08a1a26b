// Loads a Hugging Face tokenizer.json: the BPE model (vocab and merges read in place by the scanner),
// added tokens, normalizer, pre-tokenizer and decoder (through jansson). The post-processor and
// tokenizer_config.json are handled in tokenizer_config.c.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_jscan.h"

typedef struct { const char *p; size_t n; } tk_span;

// The parts of tokenizer.json as jansson values, except model.vocab and model.merges (spans).
typedef struct {
    json_t *added, *normalizer, *pre, *post, *decoder, *padding, *model; // model: its small members
    tk_span vocab, merges;
} hf_parts;

static const char *jstr(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

static bool jbool(const json_t *o, const char *key, bool dflt) {
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int dup_str(dt_ctx *ctx, const json_t *s, char **out, size_t *len) {
    size_t n = json_string_length(s);
    *out = malloc(n + 1);
    if (!*out) return dt_fail(ctx, DT_ENOMEM, "tokenizer: out of memory");
    memcpy(*out, json_string_value(s), n + 1);
    if (len) *len = n;
    return DT_OK;
}

// ---- splitting the file into parts

static int load_span(dt_ctx *ctx, tk_js *js, const char *what, json_t **out) {
    const char *start = (tk_js_peek(js), js->p);
    int rc = tk_js_skip(ctx, js);
    if (rc) return rc;
    json_error_t err;
    *out = json_loadb(start, (size_t)(js->p - start), JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!*out)
        return dt_fail(ctx, DT_EINPUT, "%s: %s (byte %zu): %s", js->path, what,
                       (size_t)(start - js->base) + (size_t)err.position, err.text);
    return DT_OK;
}

static int split_model(dt_ctx *ctx, tk_js *js, tk_buf *key, hf_parts *hp) {
    int rc = tk_js_expect(ctx, js, '{', "\"model\" must be an object");
    if (rc) return rc;
    json_decref(hp->model); // a repeated "model" member replaces the first, as in a JSON object
    hp->model = json_object();
    if (!hp->model) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", js->path);
    bool more, first = true;
    while (!(rc = tk_js_more(ctx, js, '}', &more, first)) && more) {
        first = false;
        if ((rc = tk_js_string(ctx, js, key)) || (rc = tk_js_expect(ctx, js, ':', "expected ':'"))) return rc;
        if (!strcmp(key->p, "vocab") || !strcmp(key->p, "merges")) {
            tk_span *sp = key->p[0] == 'v' ? &hp->vocab : &hp->merges;
            sp->p = (tk_js_peek(js), js->p);
            if ((rc = tk_js_skip(ctx, js))) return rc;
            sp->n = (size_t)(js->p - sp->p);
        } else {
            json_t *v;
            char what[300];
            snprintf(what, sizeof what, "model.%s", key->p);
            if ((rc = load_span(ctx, js, what, &v))) return rc;
            json_object_set_new(hp->model, key->p, v);
        }
    }
    return rc;
}

static int split_file(dt_ctx *ctx, tk_js *js, hf_parts *hp) {
    static const struct { const char *key; size_t off; } PARTS[] = {
        {"added_tokens", offsetof(hf_parts, added)},     {"normalizer", offsetof(hf_parts, normalizer)},
        {"pre_tokenizer", offsetof(hf_parts, pre)},      {"post_processor", offsetof(hf_parts, post)},
        {"decoder", offsetof(hf_parts, decoder)},        {"padding", offsetof(hf_parts, padding)},
    };
    tk_buf key = {0};
    int rc = tk_js_expect(ctx, js, '{', "expected a JSON object");
    bool more, first = true, seen_model = false;
    while (!rc && !(rc = tk_js_more(ctx, js, '}', &more, first)) && more) {
        first = false;
        if ((rc = tk_js_string(ctx, js, &key)) || (rc = tk_js_expect(ctx, js, ':', "expected ':'"))) break;
        if (!strcmp(key.p, "model")) {
            seen_model = true;
            rc = split_model(ctx, js, &key, hp);
            continue;
        }
        size_t i = 0;
        while (i < sizeof PARTS / sizeof PARTS[0] && strcmp(PARTS[i].key, key.p)) i++;
        if (i == sizeof PARTS / sizeof PARTS[0]) {
            rc = tk_js_skip(ctx, js);
        } else {
            json_t **slot = (json_t **)(void *)((char *)hp + PARTS[i].off);
            json_decref(*slot); // a repeated member replaces the first, as in a JSON object
            *slot = NULL;       // a failed load below leaves nothing for the cleanup to release again
            rc = load_span(ctx, js, PARTS[i].key, slot);
        }
    }
    tk_buf_free(&key);
    if (!rc && !seen_model) rc = dt_fail(ctx, DT_EINPUT, "%s: no \"model\" member", js->path);
    if (!rc && (!hp->vocab.p || !hp->merges.p))
        rc = dt_fail(ctx, DT_EINPUT, "%s: model needs \"vocab\" and \"merges\" (only BPE models are supported)",
                     js->path);
    return rc;
}

// ---- the BPE model

static int read_vocab(dt_ctx *ctx, dt_tokenizer *tok, tk_js *js, tk_span sp) {
    js->p = sp.p;
    js->end = sp.p + sp.n;
    tk_buf key = {0};
    // About 12 bytes of JSON per entry; the map regrows if this guesses low.
    int rc = tk_strmap_init(ctx, &tok->vocab, sp.n / 12 + 16, sp.n / 2 + 16);
    if (!rc) rc = tk_js_expect(ctx, js, '{', "model.vocab must be an object");
    bool more, first = true;
    while (!rc && !(rc = tk_js_more(ctx, js, '}', &more, first)) && more) {
        first = false;
        int64_t id;
        if ((rc = tk_js_string(ctx, js, &key)) || (rc = tk_js_expect(ctx, js, ':', "expected ':'")) ||
            (rc = tk_js_int(ctx, js, &id)))
            break;
        if (id < 0 || id >= INT32_MAX) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: model.vocab[\"%s\"]: id %lld out of range", js->path, key.p,
                         (long long)id);
            break;
        }
        rc = tk_strmap_put(ctx, &tok->vocab, key.p, key.n, (int32_t)id);
    }
    tk_buf_free(&key);
    return rc;
}

static int merge_id(dt_ctx *ctx, const dt_tokenizer *tok, const tk_js *js, size_t rank, const char *s, size_t n,
                    int32_t *id) {
    *id = tk_strmap_get(&tok->vocab, s, n);
    if (*id < 0)
        return dt_fail(ctx, DT_EINPUT, "%s: model.merges[%zu]: token '%.*s' is not in the vocabulary", js->path,
                       rank, (int)n, s);
    return DT_OK;
}

static int read_merges(dt_ctx *ctx, dt_tokenizer *tok, tk_js *js, tk_span sp) {
    js->p = sp.p;
    js->end = sp.p + sp.n;
    tk_buf a = {0}, b = {0};
    int32_t *trip = NULL; // (count, 3) left id, right id, merged id
    size_t count = 0, cap = 0;
    int rc = tk_js_expect(ctx, js, '[', "model.merges must be an array");
    bool more, first = true;
    while (!rc && !(rc = tk_js_more(ctx, js, ']', &more, first)) && more) {
        first = false;
        // Two spellings: "left right" (tokenizers < 0.20) and ["left", "right"].
        size_t split;
        if (tk_js_peek(js) == '[') {
            js->p++;
            if ((rc = tk_js_string(ctx, js, &a)) || (rc = tk_js_expect(ctx, js, ',', "expected ','")) ||
                (rc = tk_js_string(ctx, js, &b)) || (rc = tk_js_expect(ctx, js, ']', "expected ']'")))
                break;
            split = a.n;
            if ((rc = tk_buf_put(ctx, &a, b.p, b.n))) break;
        } else {
            if ((rc = tk_js_string(ctx, js, &a))) break;
            const char *sp1 = memchr(a.p, ' ', a.n);
            if (!sp1 || memchr(sp1 + 1, ' ', a.n - (size_t)(sp1 - a.p) - 1)) {
                rc = dt_fail(ctx, DT_EINPUT, "%s: model.merges[%zu]: \"%s\" is not two tokens separated by one space",
                             js->path, count, a.p);
                break;
            }
            split = (size_t)(sp1 - a.p);
            memmove(a.p + split, a.p + split + 1, a.n - split); // "l r" → "lr", the merged token
            a.n--;
        }
        if ((rc = tk_grow(ctx, (void **)&trip, &cap, 3 * (count + 1), sizeof *trip))) break;
        int32_t *t = trip + 3 * count;
        if ((rc = merge_id(ctx, tok, js, count, a.p, split, &t[0])) ||
            (rc = merge_id(ctx, tok, js, count, a.p + split, a.n - split, &t[1])) ||
            (rc = merge_id(ctx, tok, js, count, a.p, a.n, &t[2])))
            break;
        count++;
    }
    if (!rc) rc = tk_pairmap_init(ctx, &tok->merges, count);
    for (size_t i = 0; !rc && i < count; i++) tk_pairmap_put(&tok->merges, trip[3 * i], trip[3 * i + 1], (int32_t)i, trip[3 * i + 2]);
    free(trip);
    tk_buf_free(&a);
    tk_buf_free(&b);
    return rc;
}

static int read_model(dt_ctx *ctx, dt_tokenizer *tok, tk_js *js, hf_parts *hp) {
    const char *type = jstr(hp->model, "type");
    if (type && strcmp(type, "BPE"))
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: model type %s is not supported (only BPE)", js->path, type);
    const char *prefix = jstr(hp->model, "continuing_subword_prefix");
    const char *suffix = jstr(hp->model, "end_of_word_suffix");
    if ((prefix && *prefix) || (suffix && *suffix))
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: BPE with continuing_subword_prefix/end_of_word_suffix is not supported",
                       js->path);
    const json_t *dropout = json_object_get(hp->model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0)
        dt_warn(ctx, "%s: BPE dropout %g ignored: encoding is deterministic", js->path, json_number_value(dropout));
    int rc = read_vocab(ctx, tok, js, hp->vocab);
    if (!rc) rc = read_merges(ctx, tok, js, hp->merges);
    if (rc) return rc;
    tok->byte_fallback = jbool(hp->model, "byte_fallback", false);
    tok->fuse_unk = jbool(hp->model, "fuse_unk", false);
    tok->ignore_merges = jbool(hp->model, "ignore_merges", false);
    const char *unk = jstr(hp->model, "unk_token");
    if (unk && (tok->unk_id = tk_strmap_get(&tok->vocab, unk, strlen(unk))) < 0)
        return dt_fail(ctx, DT_EINPUT, "%s: model.unk_token '%s' is not in the vocabulary", js->path, unk);
    return DT_OK;
}

// Single-byte lookups: byte-level tokens for byte-level models, ASCII characters otherwise, and <0xXX>.
static void byte_tables(dt_tokenizer *tok) {
    tk_byte_level_table(tok->byte_to_cp);
    for (int i = 0; i < 324; i++) tok->cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        tok->cp_to_byte[tok->byte_to_cp[b]] = (int16_t)b;
        char s[8];
        int n = tok->byte_level ? tk_utf8_put(tok->byte_to_cp[b], s) : 1;
        if (!tok->byte_level) s[0] = (char)b;
        tok->byte_id[b] = tok->byte_level || b < 0x80 ? tk_strmap_get(&tok->vocab, s, (size_t)n) : -1;
        snprintf(s, sizeof s, "<0x%02X>", b);
        tok->fallback_id[b] = tk_strmap_get(&tok->vocab, s, 6);
    }
}

typedef int (*tk_reader)(dt_ctx *ctx, dt_tokenizer *tok, const json_t *j, const char *path, size_t *cap);

// Reads each element of a Sequence's list with the reader of its kind.
static int read_each(dt_ctx *ctx, dt_tokenizer *tok, const json_t *list, const char *path, size_t *cap,
                     tk_reader read) {
    size_t i;
    const json_t *x;
    json_array_foreach(list, i, x) {
        int rc = read(ctx, tok, x, path, cap);
        if (rc) return rc;
    }
    return DT_OK;
}

static bool is_meta(const char *s) { return !memcmp(s, "\xE2\x96\x81", 3); } // U+2581 '▁'

// SentencePiece-style tokenizers without a pre-tokenizer run BPE over a whole section as one word, which
// the word cache cannot help. When no token has '▁' right after another character, no merge can join
// the text before a '▁' run with the run, so cutting there gives the same ids and cacheable words.
static bool can_split_meta(const dt_tokenizer *tok) {
    if (tok->byte_level || tok->n_pres || tok->ignore_merges || tk_strmap_get(&tok->vocab, "\xE2\x96\x81", 3) < 0)
        return false;
    for (size_t k = 0; k <= tok->vocab.mask; k++) {
        const tk_slot *x = &tok->vocab.slot[k];
        const char *s = tk_strmap_key(&tok->vocab, x);
        for (size_t i = 1; x->hash && i + 3 <= x->len; i++)
            if (is_meta(s + i) && !(i >= 3 && is_meta(s + i - 3))) return false;
    }
    return true;
}

// ---- normalizers, pre-tokenizers, decoders

// A {"String": s} or {"Regex": r} pattern.
static int read_pattern(dt_ctx *ctx, const json_t *pat, const char *where, const char *path, const json_t **str,
                        const json_t **re) {
    *str = json_object_get(pat, "String");
    *re = json_object_get(pat, "Regex");
    if (!json_is_string(*str) && !json_is_string(*re))
        return dt_fail(ctx, DT_EINPUT, "%s: %s: pattern must be {\"String\": ...} or {\"Regex\": ...}", path, where);
    return DT_OK;
}

static int read_normalizer(dt_ctx *ctx, dt_tokenizer *tok, const json_t *j, const char *path, size_t *cap) {
    if (!j || json_is_null(j)) return DT_OK; // omitted means null, as in HF
    const char *type = jstr(j, "type");
    if (!type) return dt_fail(ctx, DT_EINPUT, "%s: normalizer without a \"type\"", path);
    if (!strcmp(type, "Sequence")) return read_each(ctx, tok, json_object_get(j, "normalizers"), path, cap, read_normalizer);
    tk_norm nm = {0};
    int rc = DT_OK;
    if (!strcmp(type, "NFC")) nm.kind = TK_NORM_NFC;
    else if (!strcmp(type, "NFD")) nm.kind = TK_NORM_NFD;
    else if (!strcmp(type, "NFKC")) nm.kind = TK_NORM_NFKC;
    else if (!strcmp(type, "NFKD")) nm.kind = TK_NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) nm.kind = TK_NORM_LOWERCASE;
    else if (!strcmp(type, "Strip")) {
        nm.kind = TK_NORM_STRIP;
        nm.left = jbool(j, "strip_left", true);
        nm.right = jbool(j, "strip_right", true);
    } else if (!strcmp(type, "Prepend")) {
        nm.kind = TK_NORM_PREPEND;
        const json_t *s = json_object_get(j, "prepend");
        if (!json_is_string(s)) return dt_fail(ctx, DT_EINPUT, "%s: Prepend normalizer needs \"prepend\"", path);
        rc = dup_str(ctx, s, &nm.str, &nm.len);
    } else if (!strcmp(type, "Replace")) {
        nm.kind = TK_NORM_REPLACE;
        const json_t *str, *re, *content = json_object_get(j, "content");
        if (!json_is_string(content)) return dt_fail(ctx, DT_EINPUT, "%s: Replace normalizer needs \"content\"", path);
        rc = read_pattern(ctx, json_object_get(j, "pattern"), "Replace normalizer", path, &str, &re);
        const json_t *p = json_is_string(str) ? str : re;
        if (!rc) rc = dup_str(ctx, content, &nm.str, &nm.len);
        if (!rc) rc = tk_regex_compile(ctx, json_string_value(p), json_string_length(p), p == str, &nm.re);
    } else {
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: normalizer %s is not supported", path, type);
    }
    if (!rc) {
        int rc2 = tk_grow(ctx, (void **)&tok->norms, cap, tok->n_norms + 1, sizeof *tok->norms);
        if (!rc2) tok->norms[tok->n_norms++] = nm;
        rc = rc2;
    }
    if (rc) {
        free(nm.str);
        if (nm.re) pcre2_code_free(nm.re);
    }
    return rc;
}

static int behavior(dt_ctx *ctx, const char *b, const char *path, tk_split_behavior *out) {
    static const char *NAMES[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (b && !strcmp(b, NAMES[i])) {
            *out = (tk_split_behavior)i;
            return DT_OK;
        }
    return dt_fail(ctx, DT_EINPUT, "%s: Split pre-tokenizer: unknown behavior '%s'", path, b ? b : "(none)");
}

static int add_split(dt_ctx *ctx, dt_tokenizer *tok, size_t *cap, const char *pat, size_t len, bool literal,
                     tk_split_behavior b, bool invert) {
    tk_pre st = {.kind = TK_PRE_SPLIT, .behavior = b, .invert = invert};
    int rc = tk_regex_compile(ctx, pat, len, literal, &st.re);
    if (rc) return rc;
    rc = tk_grow(ctx, (void **)&tok->pres, cap, tok->n_pres + 1, sizeof *tok->pres);
    if (rc) {
        pcre2_code_free(st.re);
        return rc;
    }
    tok->pres[tok->n_pres++] = st;
    return DT_OK;
}

// GPT-2's pattern, which the ByteLevel pre-tokenizer applies itself when use_regex is true.
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int read_pre(dt_ctx *ctx, dt_tokenizer *tok, const json_t *j, const char *path, size_t *cap) {
    if (!j || json_is_null(j)) return DT_OK; // omitted means null, as in HF
    const char *type = jstr(j, "type");
    if (!type) return dt_fail(ctx, DT_EINPUT, "%s: pre_tokenizer without a \"type\"", path);
    if (tok->byte_level && strcmp(type, "ByteLevel") && strcmp(type, "Sequence"))
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: pre-tokenizer %s after ByteLevel is not supported", path, type);
    if (!strcmp(type, "Sequence")) return read_each(ctx, tok, json_object_get(j, "pretokenizers"), path, cap, read_pre);
    int rc;
    if (!strcmp(type, "Split")) {
        const json_t *str, *re;
        tk_split_behavior b = TK_SPLIT_ISOLATED;
        if ((rc = read_pattern(ctx, json_object_get(j, "pattern"), "Split pre-tokenizer", path, &str, &re)) ||
            (rc = behavior(ctx, jstr(j, "behavior"), path, &b)))
            return rc;
        const json_t *p = json_is_string(str) ? str : re;
        return add_split(ctx, tok, cap, json_string_value(p), json_string_length(p), p == str, b,
                         jbool(j, "invert", false));
    }
    if (!strcmp(type, "Digits"))
        return add_split(ctx, tok, cap, "\\p{N}", 5, false,
                         jbool(j, "individual_digits", false) ? TK_SPLIT_ISOLATED : TK_SPLIT_CONTIGUOUS, false);
    if (!strcmp(type, "Whitespace")) // HF: keep the matches of \w+|[^\w\s]+
        return add_split(ctx, tok, cap, "\\w+|[^\\w\\s]+", 13, false, TK_SPLIT_REMOVED, true);
    if (!strcmp(type, "WhitespaceSplit")) return add_split(ctx, tok, cap, "\\s+", 3, false, TK_SPLIT_REMOVED, false);
    tk_pre st = {0};
    if (!strcmp(type, "ByteLevel")) {
        // HF's defaults: add_prefix_space and use_regex are true when absent.
        st.kind = TK_PRE_BYTE_LEVEL;
        st.behavior = TK_SPLIT_ISOLATED;
        st.add_prefix_space = jbool(j, "add_prefix_space", true);
        if (jbool(j, "use_regex", true) && (rc = tk_regex_compile(ctx, GPT2_RE, sizeof GPT2_RE - 1, false, &st.re)))
            return rc;
        tok->byte_level = true;
    } else if (!strcmp(type, "Metaspace")) {
        st.kind = TK_PRE_METASPACE;
        const char *r = jstr(j, "replacement");
        if (!r) r = "\xE2\x96\x81";
        st.repl_len = strlen(r);
        if (st.repl_len == 0 || st.repl_len > 4) return dt_fail(ctx, DT_EINPUT, "%s: Metaspace replacement must be one character", path);
        memcpy(st.repl, r, st.repl_len);
        const char *scheme = jstr(j, "prepend_scheme");
        st.prepend = scheme ? (!strcmp(scheme, "first") ? TK_PREPEND_FIRST
                               : !strcmp(scheme, "never") ? TK_PREPEND_NEVER : TK_PREPEND_ALWAYS)
                            : jbool(j, "add_prefix_space", true) ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
    } else {
        return dt_fail(ctx, DT_EUNSUPPORTED, "%s: pre-tokenizer %s is not supported", path, type);
    }
    if ((rc = tk_grow(ctx, (void **)&tok->pres, cap, tok->n_pres + 1, sizeof *tok->pres))) {
        if (st.re) pcre2_code_free(st.re);
        return rc;
    }
    tok->pres[tok->n_pres++] = st;
    if (st.kind == TK_PRE_METASPACE && jbool(j, "split", true))
        return add_split(ctx, tok, cap, st.repl, st.repl_len, true, TK_SPLIT_MERGED_NEXT, false);
    return DT_OK;
}

static int read_decoder(dt_ctx *ctx, dt_tokenizer *tok, const json_t *j, const char *path, size_t *cap) {
    if (!j || json_is_null(j)) return DT_OK; // omitted means null, as in HF
    tok->has_decoder = true;
    const char *type = jstr(j, "type");
    if (!type) return dt_fail(ctx, DT_EINPUT, "%s: decoder without a \"type\"", path);
    if (!strcmp(type, "Sequence")) return read_each(ctx, tok, json_object_get(j, "decoders"), path, cap, read_decoder);
    tk_dec d = {0};
    int rc = DT_OK;
    const json_t *str = NULL, *re = NULL;
    if (!strcmp(type, "ByteLevel")) d.kind = TK_DEC_BYTE_LEVEL;
    else if (!strcmp(type, "ByteFallback")) d.kind = TK_DEC_BYTE_FALLBACK;
    else if (!strcmp(type, "Fuse")) d.kind = TK_DEC_FUSE;
    else if (!strcmp(type, "Replace") && !read_pattern(ctx, json_object_get(j, "pattern"), "Replace decoder", path, &str, &re) &&
             json_is_string(str) && json_is_string(json_object_get(j, "content"))) {
        d.kind = TK_DEC_REPLACE;
        rc = dup_str(ctx, str, &d.pat, &d.pat_len);
        if (!rc) rc = dup_str(ctx, json_object_get(j, "content"), &d.str, &d.len);
    } else if (!strcmp(type, "Strip") && json_is_string(json_object_get(j, "content"))) {
        d.kind = TK_DEC_STRIP;
        rc = dup_str(ctx, json_object_get(j, "content"), &d.pat, &d.pat_len);
        d.start = (size_t)json_integer_value(json_object_get(j, "start"));
        d.stop = (size_t)json_integer_value(json_object_get(j, "stop"));
    } else if (!strcmp(type, "Metaspace")) {
        d.kind = TK_DEC_METASPACE;
        const char *r = jstr(j, "replacement");
        const char *scheme = jstr(j, "prepend_scheme");
        d.pat = strdup(r ? r : "\xE2\x96\x81");
        d.pat_len = d.pat ? strlen(d.pat) : 0;
        d.prepend = scheme ? strcmp(scheme, "never") != 0 : jbool(j, "add_prefix_space", true);
        if (!d.pat) rc = dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    } else {
        // Encoding still works; decode reports this.
        if (!tok->dec_unsupported) tok->dec_unsupported = strdup(type);
        return tok->dec_unsupported ? DT_OK : dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    }
    if (!rc) rc = tk_grow(ctx, (void **)&tok->decs, cap, tok->n_decs + 1, sizeof *tok->decs);
    if (rc) {
        free(d.pat);
        free(d.str);
        return rc;
    }
    tok->decs[tok->n_decs++] = d;
    return DT_OK;
}

// ---- added tokens

static int read_added(dt_ctx *ctx, dt_tokenizer *tok, const json_t *list, const char *path) {
    if (json_is_null(list) || !list) return tk_strmap_init(ctx, &tok->added_map, 1, 1);
    if (!json_is_array(list)) return dt_fail(ctx, DT_EINPUT, "%s: added_tokens must be an array", path);
    size_t n = json_array_size(list), i;
    const json_t *x;
    tok->added = calloc(n ? n : 1, sizeof *tok->added);
    int rc = tok->added ? tk_strmap_init(ctx, &tok->added_map, n, 32 * n) : dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
    tk_work w = {0};
    json_array_foreach(list, i, x) {
        if (rc) break;
        const json_t *content = json_object_get(x, "content"), *id = json_object_get(x, "id");
        if (!json_is_string(content) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= INT32_MAX) {
            rc = dt_fail(ctx, DT_EINPUT, "%s: added_tokens[%zu]: needs a string \"content\" and an id >= 0", path, i);
            break;
        }
        tk_added *a = &tok->added[tok->n_added];
        if ((rc = dup_str(ctx, content, &a->content, &a->len))) break;
        tok->n_added++;
        a->id = (int32_t)json_integer_value(id);
        a->special = jbool(x, "special", false);
        // HF's AddedToken default: normalized unless special.
        a->normalized = jbool(x, "normalized", !a->special);
        a->single_word = jbool(x, "single_word", false);
        a->lstrip = jbool(x, "lstrip", false);
        a->rstrip = jbool(x, "rstrip", false);
        if ((rc = tk_strmap_put(ctx, &tok->added_map, a->content, a->len, a->id))) break;
        if (!a->normalized) {
            rc = tk_trie_add(ctx, &tok->raw, a->content, a->len, (int32_t)(a - tok->added));
        } else {
            // Normalized tokens match normalized text, so their content is normalized the same way.
            const char *ns;
            size_t nn;
            w.md = w.md ? w.md : pcre2_match_data_create(1, NULL);
            rc = w.md ? tk_normalize(ctx, tok, &w, a->content, a->len, &ns, &nn)
                      : dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
            if (!rc) rc = tk_trie_add(ctx, &tok->norm, ns, nn, (int32_t)(a - tok->added));
        }
    }
    tk_work_free(&w);
    return rc;
}

int tk_read_pipeline(dt_ctx *ctx, dt_tokenizer *tok, const void *normalizer, const void *pre, const void *decoder,
                     const char *path) {
    size_t cap_norm = 0, cap_pre = 0, cap_dec = 0;
    int rc = read_normalizer(ctx, tok, normalizer, path, &cap_norm);
    if (!rc) rc = read_pre(ctx, tok, pre, path, &cap_pre);
    if (!rc) rc = read_decoder(ctx, tok, decoder, path, &cap_dec);
    return rc;
}

void tk_model_tables(dt_tokenizer *tok) {
    byte_tables(tok);
    tok->split_meta = can_split_meta(tok);
}

int tk_load_hf(dt_ctx *ctx, dt_tokenizer *tok, const char *json_path, const char *config_path) {
    char *data;
    size_t len;
    int rc = tk_read_file(ctx, json_path, &data, &len);
    if (rc) return rc;
    tok->model = TK_MODEL_BPE;
    tk_js js = {data, data + len, data, json_path};
    hf_parts hp = {0};
    rc = split_file(ctx, &js, &hp);
    if (!rc) rc = read_model(ctx, tok, &js, &hp);
    if (!rc) rc = tk_read_pipeline(ctx, tok, hp.normalizer, hp.pre, hp.decoder, json_path);
    if (!rc) {
        tk_model_tables(tok);
        rc = read_added(ctx, tok, hp.added, json_path);
    }
    if (!rc) rc = tk_finish_ids(ctx, tok);
    if (!rc) rc = tk_load_config(ctx, tok, config_path, hp.post, hp.padding);
    json_t *all[] = {hp.added, hp.normalizer, hp.pre, hp.post, hp.decoder, hp.padding, hp.model};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) json_decref(all[i]);
    free(data);
    return rc;
}

// Hugging Face tokenizer folder -> llama.cpp tokenizer.* GGUF keys (see gguf_tokenizer.h for the rules).
#include "models/gguf_tokenizer.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// llama.cpp token types (gguf-py TokenType).
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

// Special token kinds in the order the converter (gguf-py SpecialVocab) visits them, with their keys.
enum { SP_BOS, SP_EOS, SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK, SP_EOT, SP_COUNT };
static const char *const SP_NAME[SP_COUNT] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask", "eot"};
// NULL: gguf-py has no key for it and skips it (cls), or no add_ flag (all but bos/eos/sep).
static const char *const SP_ID_KEY[SP_COUNT] = {
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", NULL,
    "tokenizer.ggml.mask_token_id", "tokenizer.ggml.eot_token_id",
};
static const char *const SP_ADD_KEY[SP_COUNT] = {
    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", NULL, "tokenizer.ggml.add_sep_token",
    NULL, NULL, NULL, NULL,
};

typedef struct {
    dt_ctx *ctx;
    char tok_path[1024], cfg_path[1024], mcfg_path[1024];
    json_t *tok, *cfg, *mcfg; // tokenizer.json; tokenizer_config.json and config.json, or NULL
    json_t *vocab, *added;    // model.vocab (object), added_tokens (array or NULL)
    bool spm;                 // SentencePiece-style BPE with byte fallback, else byte-level BPE
    int64_t n;                // token count written (the model's vocabulary size)
    char **text;              // (n) token text, owned; NULL until filled
    int32_t *type;            // (n)
    float *score;             // (n), SentencePiece kind only
    uint8_t *added_flag;      // (n) 1: an added token, 2: an added special token
    int64_t sp_id[SP_COUNT];  // -1 when unset
    int sp_order[SP_COUNT], n_sp_order;   // the kinds, in the order their ids were set
    int add[SP_COUNT];                    // -1 unset, else 0/1
    int add_order[SP_COUNT], n_add_order;
} vocab;

// flags: JSON_DECODE_INT_AS_REAL for the config files, whose "model_max_length" is often larger than
// an int64 (1e30); their integers are then read with int_value.
static int load_json(dt_ctx *ctx, const char *path, bool required, size_t flags, json_t **out) {
    *out = NULL;
    if (!required && access(path, F_OK) != 0) return DT_OK;
    json_error_t err;
    *out = json_load_file(path, flags, &err);
    if (!*out) {
        if (access(path, R_OK) != 0) return dt_fail(ctx, DT_EINPUT, "%s: cannot read the file", path);
        return dt_fail(ctx, DT_EINPUT, "%s:%d:%d: invalid JSON: %s", path, err.line, err.column, err.text);
    }
    if (!json_is_object(*out)) return dt_fail(ctx, DT_EINPUT, "%s: expected a JSON object at the top level", path);
    return DT_OK;
}

// An integer from a file read with JSON_DECODE_INT_AS_REAL: a number with no fractional part.
static bool int_value(const json_t *j, int64_t *out) {
    if (!json_is_number(j)) return false;
    double d = json_number_value(j);
    if (d != (double)(int64_t)d || d < -9e15 || d > 9e15) return false;
    *out = (int64_t)d;
    return true;
}

// A tokenizer_config.json entry such as "bos_token": either a string or {"content": ...}.
static const char *token_content(const json_t *entry) {
    if (json_is_string(entry)) return json_string_value(entry);
    if (json_is_object(entry) && json_is_string(json_object_get(entry, "content")))
        return json_string_value(json_object_get(entry, "content"));
    return NULL;
}

// The id of the first added token with this content, or -1 (gguf-py looks only at added tokens).
static int64_t added_id(const vocab *v, const char *content) {
    size_t i;
    json_t *a;
    if (!content) return -1;
    json_array_foreach(v->added, i, a) {
        const char *c = json_string_value(json_object_get(a, "content"));
        if (c && !strcmp(c, content)) return json_integer_value(json_object_get(a, "id"));
    }
    return -1;
}

static void set_special(vocab *v, int sp, int64_t id) {
    if (id < 0 || v->sp_id[sp] >= 0) return; // the first source to name a token wins
    if (id >= v->n) {
        dt_warn(v->ctx, "%s: special token %s id %lld is outside the vocabulary of %lld; skipped",
                v->tok_path, SP_NAME[sp], (long long)id, (long long)v->n);
        return;
    }
    v->sp_id[sp] = id;
    v->sp_order[v->n_sp_order++] = sp;
}

static void set_add(vocab *v, int sp, bool on) {
    if (v->add[sp] < 0) v->add_order[v->n_add_order++] = sp;
    v->add[sp] = on;
}

static const char *template_special(const json_t *item) {
    return json_string_value(json_object_get(json_object_get(item, "SpecialToken"), "id"));
}

static bool str_eq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

// gguf-py SpecialVocab: add_bos/add_eos from the post-processor, then the special tokens named in
// tokenizer_config.json, then the *_token_id of config.json.
static void read_specials(vocab *v) {
    const char *tok_str[SP_COUNT] = {0};
    for (int sp = 0; sp < SP_COUNT && v->cfg; sp++) {
        char k[32];
        snprintf(k, sizeof k, "%s_token", SP_NAME[sp]);
        tok_str[sp] = token_content(json_object_get(v->cfg, k));
    }
    if (!tok_str[SP_BOS] && tok_str[SP_CLS]) tok_str[SP_BOS] = tok_str[SP_CLS];
    if (!tok_str[SP_EOS] && tok_str[SP_SEP]) tok_str[SP_EOS] = tok_str[SP_SEP];

    json_t *pp = json_object_get(v->tok, "post_processor"), *procs = json_object_get(pp, "processors");
    size_t np = json_is_array(procs) ? json_array_size(procs) : pp && json_is_object(pp) ? 1 : 0;
    for (size_t i = 0; i < np; i++) {
        json_t *p = json_is_array(procs) ? json_array_get(procs, i) : pp;
        const char *type = json_string_value(json_object_get(p, "type"));
        if (str_eq(type, "RobertaProcessing")) {
            set_add(v, SP_BOS, true);
            set_add(v, SP_EOS, true);
            set_add(v, SP_SEP, true);
        } else if (str_eq(type, "TemplateProcessing")) {
            json_t *single = json_object_get(p, "single");
            size_t ns = json_array_size(single);
            if (ns <= 1) continue;
            const char *first = template_special(json_array_get(single, 0));
            const char *last = template_special(json_array_get(single, ns - 1));
            if (first) {
                if (!v->cfg) tok_str[SP_BOS] = first;
                set_add(v, SP_BOS, str_eq(first, tok_str[SP_BOS]) || str_eq(first, tok_str[SP_CLS]));
            }
            if (last) {
                if (!v->cfg) {
                    tok_str[SP_EOS] = last;
                } else if (!str_eq(last, tok_str[SP_EOS])) {
                    // The converter keeps the configured EOS as end-of-turn and makes `last` the EOS.
                    tok_str[SP_EOT] = tok_str[SP_EOS];
                    tok_str[SP_EOS] = last;
                }
                set_add(v, SP_EOS, true);
            }
        }
    }
    if (!v->cfg) return; // without tokenizer_config.json the converter names no special token ids
    for (int sp = 0; sp < SP_COUNT; sp++) {
        char k[32];
        snprintf(k, sizeof k, "add_%s_token", SP_NAME[sp]);
        json_t *flag = json_object_get(v->cfg, k);
        if (json_is_boolean(flag)) set_add(v, sp, json_is_true(flag));
        set_special(v, sp, added_id(v, tok_str[sp]));
    }
    for (int sp = 0; sp < SP_COUNT && v->mcfg; sp++) {
        char k[32];
        snprintf(k, sizeof k, "%s_token_id", SP_NAME[sp]);
        int64_t id;
        if (int_value(json_object_get(v->mcfg, k), &id)) set_special(v, sp, id);
    }
}

// convert_hf_to_gguf's does_token_look_special: added tokens some models forget to mark special.
static bool looks_special(const char *t) {
    size_t n = strlen(t);
#define ENDS(s) (n >= strlen(s) && !strcmp(t + n - strlen(s), s))
#define STARTS(s) (!strncmp(t, s, strlen(s)))
    return !strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]") ||
           (STARTS("<|") && ENDS("|>")) || (STARTS("<\xef\xbd\x9c") && ENDS("\xef\xbd\x9c>")) ||
           (STARTS("<unused") && ENDS(">"));
#undef ENDS
#undef STARTS
}

// Replaces every U+2581 (the SentencePiece space) by ' ', as the converter pre-normalizes user-defined tokens.
static char *replace_spm_space(const char *s) {
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out) return NULL;
    while (*s) {
        if (!strncmp(s, "\xe2\x96\x81", 3)) { *o++ = ' '; s += 3; }
        else *o++ = *s++;
    }
    *o = 0;
    return out;
}

static bool is_byte_token(const char *t) {
    return strlen(t) == 6 && !strncmp(t, "<0x", 3) && t[5] == '>' &&
           strchr("0123456789abcdefABCDEF", t[3]) && strchr("0123456789abcdefABCDEF", t[4]) && t[3] && t[4];
}

// Reads the token ids of model.vocab and added_tokens and decides the vocabulary size.
static int read_ids(vocab *v, const dt_gguf_tok_opts *opts) {
    dt_ctx *ctx = v->ctx;
    int64_t max_id = -1;
    const char *k;
    json_t *val;
    json_object_foreach(v->vocab, k, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24))
            return dt_fail(ctx, DT_EINPUT, "%s: model.vocab: token '%s' has an invalid id (expected 0 to 16777215)", v->tok_path, k);
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    if (v->added && !json_is_array(v->added)) return dt_fail(ctx, DT_EINPUT, "%s: added_tokens is not an array", v->tok_path);
    size_t i;
    json_array_foreach(v->added, i, val) {
        json_t *id = json_object_get(val, "id");
        if (!json_is_string(json_object_get(val, "content")) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (1 << 24))
            return dt_fail(ctx, DT_EINPUT, "%s: added_tokens[%zu]: expected a \"content\" string and an \"id\" from 0 to 16777215",
                           v->tok_path, i);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) return dt_fail(ctx, DT_EINPUT, "%s: the vocabulary is empty", v->tok_path);
    v->n = max_id + 1;
    int64_t cfg_n;
    const char *src = "tokenizer.json";
    if (opts && opts->n_vocab > 0) {
        v->n = opts->n_vocab;
        src = "the model";
    } else if (int_value(json_object_get(v->mcfg, "vocab_size"), &cfg_n) && cfg_n > 0) {
        v->n = cfg_n;
        src = v->mcfg_path;
    }
    if (max_id >= v->n)
        return dt_fail(ctx, DT_EINPUT, "%s: token id %lld does not fit the vocabulary size %lld of %s",
                       v->tok_path, (long long)max_id, (long long)v->n, src);
    v->text = calloc((size_t)v->n, sizeof *v->text);
    v->type = calloc((size_t)v->n, sizeof *v->type);
    v->score = calloc((size_t)v->n, sizeof *v->score);
    v->added_flag = calloc((size_t)v->n, 1);
    if (!v->text || !v->type || !v->score || !v->added_flag) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", v->tok_path);
    json_object_foreach(v->vocab, k, val) {
        int64_t id = json_integer_value(val);
        free(v->text[id]);
        if (!(v->text[id] = strdup(k))) return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", v->tok_path);
    }
    json_array_foreach(v->added, i, val) {
        int64_t id = json_integer_value(json_object_get(val, "id"));
        free(v->text[id]);
        if (!(v->text[id] = strdup(json_string_value(json_object_get(val, "content")))))
            return dt_fail(ctx, DT_ENOMEM, "%s: out of memory", v->tok_path);
        v->added_flag[id] = json_is_true(json_object_get(val, "special")) ? 2 : 1;
    }
    return DT_OK;
}

// Ids of the tokens tokenizer_config.json calls special (HF all_special_ids), for the SentencePiece kind.
static bool config_special(const vocab *v, int64_t id) {
    for (int sp = 0; sp < SP_COUNT; sp++) {
        char k[32];
        snprintf(k, sizeof k, "%s_token", SP_NAME[sp]);
        const char *c = token_content(json_object_get(v->cfg, k));
        if (c && v->text[id] && !strcmp(c, v->text[id])) return true;
    }
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(v->cfg, "additional_special_tokens"), i, a) {
        const char *c = token_content(a);
        if (c && v->text[id] && !strcmp(c, v->text[id])) return true;
    }
    return false;
}

// One merge as "a b" (merges are stored either as such strings or as [a, b] pairs; spaces inside a
// pair's parts become U+0120, as the converter encodes them). Returns a malloc'd string.
static char *merge_string(const json_t *m) {
    if (json_is_string(m)) return strdup(json_string_value(m));
    if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(json_array_get(m, 0)) || !json_is_string(json_array_get(m, 1)))
        return NULL;
    const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
    char *out = malloc(2 * (strlen(a) + strlen(b)) + 2), *o = out;
    if (!out) return NULL;
    for (const char *parts[2] = {a, b}, **p = parts; p < parts + 2; p++) {
        for (const char *s = *p; *s; s++) {
            if (*s == ' ') { *o++ = '\xc4'; *o++ = '\xa0'; }
            else *o++ = *s;
        }
        if (p == parts) *o++ = ' ';
    }
    *o = 0;
    return out;
}

// Token types (and scores for the SentencePiece kind), as the converter assigns them.
static int assign_types(vocab *v, char **merges, size_t n_merges) {
    const char *unk = json_string_value(json_object_get(json_object_get(v->tok, "model"), "unk_token"));
    for (int64_t id = 0; id < v->n; id++) {
        if (!v->text[id]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%lld]", (long long)id);
            if (!(v->text[id] = strdup(pad))) return dt_fail(v->ctx, DT_ENOMEM, "out of memory");
            v->type[id] = TT_UNUSED;
            v->score[id] = -1000.0f;
            continue;
        }
        bool special = v->added_flag[id] == 2 || looks_special(v->text[id]) || (v->spm && config_special(v, id));
        if (v->spm) {
            if (special) v->type[id] = TT_CONTROL;
            else if (v->added_flag[id]) v->type[id] = TT_USER_DEFINED;
            else if (is_byte_token(v->text[id])) v->type[id] = TT_BYTE;
            else if (str_eq(unk, v->text[id])) v->type[id] = TT_UNKNOWN;
            else v->type[id] = TT_NORMAL;
            v->score[id] = v->added_flag[id] ? -1000.0f : v->type[id] == TT_NORMAL ? -(float)((int64_t)n_merges + id) : 0.0f;
        } else if (v->added_flag[id]) {
            if (special) {
                v->type[id] = TT_CONTROL;
            } else {
                char *t = replace_spm_space(v->text[id]);
                if (!t) return dt_fail(v->ctx, DT_ENOMEM, "out of memory");
                free(v->text[id]);
                v->text[id] = t;
                v->type[id] = TT_USER_DEFINED;
            }
        } else {
            v->type[id] = TT_NORMAL;
        }
    }
    if (!v->spm) return DT_OK;
    // A normal token's score: minus the rank of the first merge that produces it, so that llama.cpp's
    // SentencePiece merging (highest score first) follows the BPE merge order.
    for (size_t r = n_merges; r-- > 0;) {
        const char *sp = strchr(merges[r], ' ');
        if (!sp) continue;
        size_t la = (size_t)(sp - merges[r]);
        char *joined = malloc(strlen(merges[r]));
        if (!joined) return dt_fail(v->ctx, DT_ENOMEM, "out of memory");
        memcpy(joined, merges[r], la);
        strcpy(joined + la, sp + 1);
        json_t *id = json_object_get(v->vocab, joined);
        free(joined);
        if (id && json_integer_value(id) < v->n && v->type[json_integer_value(id)] == TT_NORMAL)
            v->score[json_integer_value(id)] = -(float)r;
    }
    return DT_OK;
}

// The split regex of a pre-tokenizer (first Split in a Sequence), or NULL.
static const char *split_regex(const json_t *pre) {
    const char *type = json_string_value(json_object_get(pre, "type"));
    if (str_eq(type, "Split")) return json_string_value(json_object_get(json_object_get(pre, "pattern"), "Regex"));
    if (!str_eq(type, "Sequence")) return NULL;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(pre, "pretokenizers"), i, p) {
        const char *r = split_regex(p);
        if (r) return r;
    }
    return NULL;
}

static int detect_pre(vocab *v, const char **out) {
    json_t *pre = json_object_get(v->tok, "pre_tokenizer");
    const char *regex = split_regex(pre);
    if (str_eq(regex, DT_GGUF_PRE_LLAMA3_REGEX)) { *out = "llama-bpe"; return DT_OK; }
    if (str_eq(regex, DT_GGUF_PRE_QWEN2_REGEX)) { *out = "qwen2"; return DT_OK; }
    const char *type = json_string_value(json_object_get(pre, "type"));
    json_t *list = json_object_get(pre, "pretokenizers");
    if (!regex && str_eq(type, "ByteLevel") && json_is_true(json_object_get(pre, "use_regex"))) { *out = "gpt-2"; return DT_OK; }
    if (!regex && str_eq(type, "Sequence") && json_array_size(list) == 2) {
        json_t *d = json_array_get(list, 0), *b = json_array_get(list, 1);
        if (str_eq(json_string_value(json_object_get(d, "type")), "Digits") && json_is_true(json_object_get(d, "individual_digits")) &&
            str_eq(json_string_value(json_object_get(b, "type")), "ByteLevel") && json_is_true(json_object_get(b, "use_regex"))) {
            *out = "smollm";
            return DT_OK;
        }
    }
    char *dump = json_dumps(pre, JSON_COMPACT);
    int code = dt_fail(v->ctx, DT_EUNSUPPORTED, "%s: pre_tokenizer not recognised, so llama.cpp's tokenizer.ggml.pre is unknown "
                       "(known: the Llama 3, Qwen2, SmolLM and GPT-2 splits); name it explicitly. pre_tokenizer: %.600s",
                       v->tok_path, dump ? dump : "?");
    free(dump);
    return code;
}

static int write_chat_template(vocab *v, dt_gguf_writer *w, const char *dir) {
    dt_ctx *ctx = v->ctx;
    json_t *ct = json_object_get(v->cfg, "chat_template");
    if (json_is_string(ct)) return dt_gguf_set_str(ctx, w, "tokenizer.chat_template", json_string_value(ct));
    if (json_is_array(ct)) {
        // A list of {name, template}: "default" is the main one, the others get their own keys.
        const char **names = calloc(json_array_size(ct) + 1, sizeof *names);
        char **owned = calloc(json_array_size(ct) + 1, sizeof *owned);
        const char *def = NULL;
        size_t n = 0, i;
        int st = names && owned ? DT_OK : dt_fail(ctx, DT_ENOMEM, "out of memory");
        json_t *e;
        json_array_foreach(ct, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            const char *tpl = json_string_value(json_object_get(e, "template"));
            if (st || !name || !name[0] || !tpl) continue;
            char *clean = strdup(name); // only [A-Za-z0-9], like the converter
            if (!clean) { st = dt_fail(ctx, DT_ENOMEM, "out of memory"); break; }
            for (char *c = clean; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9'))) *c = '_';
            if (!strcmp(clean, "default")) {
                def = tpl;
                free(clean);
                continue;
            }
            char key[600];
            snprintf(key, sizeof key, "tokenizer.chat_template.%s", clean);
            st = dt_gguf_set_str(ctx, w, key, tpl);
            owned[n] = clean;
            names[n++] = clean;
        }
        if (!st && n) st = dt_gguf_set_arr_str(ctx, w, "tokenizer.chat_templates", names, NULL, n);
        if (!st && def) st = dt_gguf_set_str(ctx, w, "tokenizer.chat_template", def);
        for (size_t k = 0; k < n; k++) free(owned[k]);
        free(owned);
        free(names);
        return st;
    }
    if (!v->cfg) return DT_OK;
    char path[1100];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return DT_OK;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    size_t got = buf ? fread(buf, 1, (size_t)sz, f) : 0;
    fclose(f);
    if (!buf || got != (size_t)sz) {
        free(buf);
        return dt_fail(ctx, DT_EIO, "%s: cannot read the file", path);
    }
    buf[got] = 0;
    int st = dt_gguf_set_str(ctx, w, "tokenizer.chat_template", buf);
    free(buf);
    return st;
}

static int write_keys(vocab *v, dt_gguf_writer *w, const char *pre, char **merges, size_t n_merges, const char *dir) {
    dt_ctx *ctx = v->ctx;
    int st = dt_gguf_set_str(ctx, w, "tokenizer.ggml.model", v->spm ? "llama" : "gpt2");
    st = st ? st : dt_gguf_set_str(ctx, w, "tokenizer.ggml.pre", pre);
    st = st ? st : dt_gguf_set_arr_str(ctx, w, "tokenizer.ggml.tokens", (const char *const *)v->text, NULL, (size_t)v->n);
    if (v->spm) st = st ? st : dt_gguf_set_arr(ctx, w, "tokenizer.ggml.scores", DT_GGUF_F32, v->score, (size_t)v->n);
    st = st ? st : dt_gguf_set_arr(ctx, w, "tokenizer.ggml.token_type", DT_GGUF_I32, v->type, (size_t)v->n);
    if (!v->spm) st = st ? st : dt_gguf_set_arr_str(ctx, w, "tokenizer.ggml.merges", (const char *const *)merges, NULL, n_merges);
    for (int i = 0; i < v->n_sp_order && !st; i++) {
        int sp = v->sp_order[i];
        if (SP_ID_KEY[sp]) st = dt_gguf_set_u32(ctx, w, SP_ID_KEY[sp], (uint32_t)v->sp_id[sp]);
    }
    for (int i = 0; i < v->n_add_order && !st; i++) {
        int sp = v->add_order[i];
        if (SP_ADD_KEY[sp]) st = dt_gguf_set_bool(ctx, w, SP_ADD_KEY[sp], v->add[sp]);
    }
    // llama.cpp adds a BOS for "llama-bpe" by default; say so when this tokenizer adds none.
    if (!st && !strcmp(pre, "llama-bpe") && v->add[SP_BOS] < 0) st = dt_gguf_set_bool(ctx, w, "tokenizer.ggml.add_bos_token", false);
    return st ? st : write_chat_template(v, w, dir);
}

int dt_gguf_add_tokenizer(dt_ctx *ctx, dt_gguf_writer *w, const char *dir, const dt_gguf_tok_opts *opts) {
    vocab v = {.ctx = ctx};
    for (int sp = 0; sp < SP_COUNT; sp++) v.sp_id[sp] = v.add[sp] = -1;
    snprintf(v.tok_path, sizeof v.tok_path, "%s/tokenizer.json", dir);
    snprintf(v.cfg_path, sizeof v.cfg_path, "%s/tokenizer_config.json", dir);
    snprintf(v.mcfg_path, sizeof v.mcfg_path, "%s/config.json", dir);
    char **merges = NULL;
    size_t n_merges = 0;
    int st = load_json(ctx, v.tok_path, true, 0, &v.tok);
    st = st ? st : load_json(ctx, v.cfg_path, false, JSON_DECODE_INT_AS_REAL, &v.cfg);
    st = st ? st : load_json(ctx, v.mcfg_path, false, JSON_DECODE_INT_AS_REAL, &v.mcfg);
    json_t *model = json_object_get(v.tok, "model");
    if (!st) {
        const char *type = json_string_value(json_object_get(model, "type"));
        v.vocab = json_object_get(model, "vocab");
        v.added = json_object_get(v.tok, "added_tokens");
        if (!str_eq(type, "BPE"))
            st = dt_fail(ctx, DT_EUNSUPPORTED, "%s: model.type is '%s'; only BPE tokenizers can be written to GGUF here",
                         v.tok_path, type ? type : "(missing)");
        else if (!json_is_object(v.vocab))
            st = dt_fail(ctx, DT_EINPUT, "%s: model.vocab is missing or not an object", v.tok_path);
        v.spm = json_is_true(json_object_get(model, "byte_fallback"));
    }
    st = st ? st : read_ids(&v, opts);
    json_t *jm = json_object_get(model, "merges");
    if (!st && jm && !json_is_array(jm)) st = dt_fail(ctx, DT_EINPUT, "%s: model.merges is not an array", v.tok_path);
    if (!st) {
        n_merges = json_array_size(jm);
        merges = calloc(n_merges + 1, sizeof *merges);
        if (!merges) st = dt_fail(ctx, DT_ENOMEM, "out of memory");
        for (size_t i = 0; i < n_merges && !st; i++)
            if (!(merges[i] = merge_string(json_array_get(jm, i))))
                st = dt_fail(ctx, DT_EINPUT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", v.tok_path, i);
    }
    if (!st) read_specials(&v);
    st = st ? st : assign_types(&v, merges, n_merges);
    const char *pre = opts && opts->pre ? opts->pre : v.spm ? "default" : NULL;
    if (!st && !pre) st = detect_pre(&v, &pre);
    st = st ? st : write_keys(&v, w, pre, merges, n_merges, dir);
    for (size_t i = 0; merges && i < n_merges; i++) free(merges[i]);
    free(merges);
    for (int64_t i = 0; v.text && i < v.n; i++) free(v.text[i]);
    free(v.text);
    free(v.type);
    free(v.score);
    free(v.added_flag);
    json_decref(v.tok);
    json_decref(v.cfg);
    json_decref(v.mcfg);
    return st;
}

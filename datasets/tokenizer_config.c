// Special ids around a sequence and the named special tokens: tokenizer.json's post_processor
// (TemplateProcessing, Roberta/BertProcessing, Sequence) and tokenizer_config.json (bos/eos/pad tokens,
// add_bos_token/add_eos_token, chat_template).
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_impl.h"

static int push_id(dt_ctx *ctx, int32_t **arr, size_t *n, int32_t id) {
    int32_t *p = realloc(*arr, (*n + 1) * sizeof *p);
    if (!p) return dt_fail(ctx, DT_ENOMEM, "tokenizer: out of memory");
    p[(*n)++] = id;
    *arr = p;
    return DT_OK;
}

static int check_id(dt_ctx *ctx, const dt_tokenizer *tok, json_int_t id, const char *where) {
    if (id < 0 || id >= tok->n_ids)
        return dt_fail(ctx, DT_EINPUT, "%s: post_processor: %s: id %lld is not in the vocabulary", tok->path, where,
                       (long long)id);
    return DT_OK;
}

// TemplateProcessing "single": special tokens before $A go in front, those after it at the end.
static int read_template(dt_ctx *ctx, dt_tokenizer *tok, const json_t *post) {
    const json_t *single = json_object_get(post, "single"), *specials = json_object_get(post, "special_tokens");
    tok->n_prefix = tok->n_suffix = 0;
    bool after = false;
    size_t i;
    const json_t *item;
    json_array_foreach(single, i, item) {
        const json_t *sp = json_object_get(item, "SpecialToken");
        if (!sp) {
            after = true; // {"Sequence": {"id": "A"}}
            continue;
        }
        const char *name = json_string_value(json_object_get(sp, "id"));
        const json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
        if (!json_is_array(ids))
            return dt_fail(ctx, DT_EINPUT, "%s: post_processor: special token '%s' has no \"ids\" in special_tokens",
                           tok->path, name ? name : "(unnamed)");
        size_t k;
        const json_t *v;
        json_array_foreach(ids, k, v) {
            int rc = check_id(ctx, tok, json_integer_value(v), name);
            if (!rc) rc = after ? push_id(ctx, &tok->suffix, &tok->n_suffix, (int32_t)json_integer_value(v))
                                : push_id(ctx, &tok->prefix, &tok->n_prefix, (int32_t)json_integer_value(v));
            if (rc) return rc;
        }
    }
    return DT_OK;
}

static int read_post(dt_ctx *ctx, dt_tokenizer *tok, const json_t *post) {
    if (!post || json_is_null(post)) return DT_OK;
    const char *type = json_string_value(json_object_get(post, "type"));
    if (!type) return dt_fail(ctx, DT_EINPUT, "%s: post_processor without a \"type\"", tok->path);
    if (!strcmp(type, "ByteLevel")) return DT_OK; // only adjusts offsets
    if (!strcmp(type, "TemplateProcessing")) return read_template(ctx, tok, post);
    if (!strcmp(type, "Sequence")) {
        size_t i;
        const json_t *p;
        json_array_foreach(json_object_get(post, "processors"), i, p) {
            int rc = read_post(ctx, tok, p);
            if (rc) return rc;
        }
        return DT_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        // "cls": ["<s>", 0], "sep": ["</s>", 2]
        json_int_t cls = json_integer_value(json_array_get(json_object_get(post, "cls"), 1));
        json_int_t sep = json_integer_value(json_array_get(json_object_get(post, "sep"), 1));
        tok->n_prefix = tok->n_suffix = 0;
        int rc = check_id(ctx, tok, cls, "cls");
        if (!rc) rc = check_id(ctx, tok, sep, "sep");
        if (!rc) rc = push_id(ctx, &tok->prefix, &tok->n_prefix, (int32_t)cls);
        if (!rc) rc = push_id(ctx, &tok->suffix, &tok->n_suffix, (int32_t)sep);
        return rc;
    }
    return dt_fail(ctx, DT_EUNSUPPORTED, "%s: post-processor %s is not supported", tok->path, type);
}

// A token named in tokenizer_config.json: a string, or {"__type": "AddedToken", "content": ...}.
static const char *config_token(const json_t *cfg, const char *key) {
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_string_value(v);
}

static int config_id(dt_ctx *ctx, const dt_tokenizer *tok, const json_t *cfg, const char *key, const char *path,
                     int32_t *id) {
    const char *name = config_token(cfg, key);
    if (!name) return DT_OK;
    *id = dt_tokenizer_token_to_id(tok, name);
    if (*id < 0) dt_warn(ctx, "%s: %s '%s' is not in the vocabulary; ignored", path, key, name);
    return DT_OK;
}

static void remove_at(int32_t *arr, size_t *n, size_t i) {
    memmove(arr + i, arr + i + 1, (*n - i - 1) * sizeof *arr);
    (*n)--;
}

// add_bos_token / add_eos_token, when given, decide whether BOS leads and EOS ends the template
// (transformers rebuilds the post-processor from them for Llama-style tokenizers).
static int apply_add_flags(dt_ctx *ctx, dt_tokenizer *tok, const json_t *cfg) {
    const json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
    int rc = DT_OK;
    if (json_is_boolean(ab) && tok->bos >= 0) {
        bool has = tok->n_prefix && tok->prefix[0] == tok->bos;
        if (json_is_true(ab) && !has) {
            rc = push_id(ctx, &tok->prefix, &tok->n_prefix, tok->bos);
            if (!rc) {
                memmove(tok->prefix + 1, tok->prefix, (tok->n_prefix - 1) * sizeof *tok->prefix);
                tok->prefix[0] = tok->bos;
            }
        } else if (!json_is_true(ab) && has) {
            remove_at(tok->prefix, &tok->n_prefix, 0);
        }
    }
    if (!rc && json_is_boolean(ae) && tok->eos >= 0) {
        bool has = tok->n_suffix && tok->suffix[tok->n_suffix - 1] == tok->eos;
        if (json_is_true(ae) && !has) rc = push_id(ctx, &tok->suffix, &tok->n_suffix, tok->eos);
        else if (!json_is_true(ae) && has) remove_at(tok->suffix, &tok->n_suffix, tok->n_suffix - 1);
    }
    return rc;
}

// chat_template is a string, or a list of {"name", "template"} of which "default" is the one.
static int read_chat_template(dt_ctx *ctx, dt_tokenizer *tok, const json_t *cfg, const char *path) {
    const json_t *t = json_object_get(cfg, "chat_template");
    const char *s = json_string_value(t);
    if (json_is_array(t)) {
        size_t i;
        const json_t *x;
        json_array_foreach(t, i, x) {
            const char *name = json_string_value(json_object_get(x, "name"));
            if (!s || (name && !strcmp(name, "default"))) s = json_string_value(json_object_get(x, "template"));
        }
    }
    if (!s) return DT_OK;
    tok->chat_template = strdup(s);
    return tok->chat_template ? DT_OK : dt_fail(ctx, DT_ENOMEM, "%s: out of memory", path);
}

int tk_load_config(dt_ctx *ctx, dt_tokenizer *tok, const char *config_path, const void *post_processor,
                   const void *padding) {
    int rc = read_post(ctx, tok, post_processor);
    if (rc) return rc;
    json_t *cfg = NULL;
    if (config_path) {
        json_error_t err;
        cfg = json_load_file(config_path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
        if (!cfg) return dt_fail(ctx, DT_EINPUT, "%s:%d: %s", config_path, err.line, err.text);
        if (!json_is_object(cfg)) {
            json_decref(cfg);
            return dt_fail(ctx, DT_EINPUT, "%s: expected a JSON object", config_path);
        }
    }
    // Without a config, the template's own special tokens name BOS and EOS.
    if (tok->n_prefix) tok->bos = tok->prefix[0];
    if (tok->n_suffix) tok->eos = tok->suffix[tok->n_suffix - 1];
    const json_t *pad_id = json_object_get(padding, "pad_id");
    if (json_is_integer(pad_id) && json_integer_value(pad_id) >= 0 && json_integer_value(pad_id) < tok->n_ids)
        tok->pad = (int32_t)json_integer_value(pad_id);
    if (cfg) {
        rc = config_id(ctx, tok, cfg, "bos_token", config_path, &tok->bos);
        if (!rc) rc = config_id(ctx, tok, cfg, "eos_token", config_path, &tok->eos);
        if (!rc) rc = config_id(ctx, tok, cfg, "pad_token", config_path, &tok->pad);
        if (!rc) rc = apply_add_flags(ctx, tok, cfg);
        if (!rc) rc = read_chat_template(ctx, tok, cfg, config_path);
    }
    json_decref(cfg);
    return rc;
}

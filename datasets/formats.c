#include "datasets/formats.h"
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[DT_FMT_COUNT] = {"auto", "text", "completion", "alpaca", "chat", "sharegpt", "tokens"};
// The key that identifies each format, for "missing key" messages.
static const char *const MAIN_KEY[DT_FMT_COUNT] = {"", "text", "prompt", "instruction", "messages", "conversations",
                                                   "input_ids"};

static const char ALPACA_INPUT[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n";
static const char ALPACA_NO_INPUT[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n";

const char *dt_rec_format_name(dt_rec_format f) { return f < DT_FMT_COUNT ? NAMES[f] : "?"; }

int dt_rec_format_parse(dt_ctx *ctx, const char *name, dt_rec_format *out) {
    for (int i = 0; i < DT_FMT_COUNT; i++)
        if (!strcmp(name, NAMES[i])) {
            *out = (dt_rec_format)i;
            return DT_OK;
        }
    return dt_fail(ctx, DT_EINPUT, "unknown data format '%s' (expected auto or one of: " DT_FORMAT_LIST ")", name);
}

int dt_rec_format_detect(dt_ctx *ctx, const json_t *rec, dt_rec_format *out) {
    if (!json_is_object(rec)) return dt_fail(ctx, DT_EINPUT, "expected a JSON object per line");
#define HAS(k) (json_object_get(rec, k) != NULL)
    if (HAS("messages")) *out = DT_FMT_CHAT;
    else if (HAS("conversations")) *out = DT_FMT_SHAREGPT;
    else if (HAS("input_ids")) *out = DT_FMT_TOKENS;
    else if (HAS("instruction") && HAS("output")) *out = DT_FMT_ALPACA;
    else if (HAS("prompt") && HAS("completion")) *out = DT_FMT_COMPLETION;
    else if (HAS("text")) *out = DT_FMT_TEXT;
    else {
        // Name the keys that are there, so a typo ("message", "convos") is easy to see.
        char keys[256] = "";
        size_t used = 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)rec, k, v) {
            int w = snprintf(keys + used, sizeof keys - used, "%s'%s'", used ? ", " : "", k);
            if (w < 0 || (size_t)w >= sizeof keys - used) break;
            used += (size_t)w;
        }
        return dt_fail(ctx, DT_EINPUT, "cannot tell the data format from the keys {%s}; expected one of: " DT_FORMAT_LIST,
                       keys);
    }
#undef HAS
    return DT_OK;
}

int dt_record_encoder_init(dt_ctx *ctx, dt_record_encoder *r, const dt_tokenizer *tok, bool train_on_prompt) {
    memset(r, 0, sizeof *r);
    r->tok = tok;
    r->train_on_prompt = train_on_prompt;
    if (!tok) return DT_OK;
    r->vocab = dt_tokenizer_vocab_size(tok);
    return dt_seg_encoder_init(ctx, &r->enc, tok);
}

void dt_record_encoder_free(dt_record_encoder *r) {
    if (r->tok) dt_seg_encoder_free(&r->enc);
    dt_segs_free(&r->segs);
    free(r->msgs);
    memset(r, 0, sizeof *r);
}

// A required string value; a missing key in a file of this format names the format.
static int get_str(dt_ctx *ctx, const json_t *rec, const char *key, bool optional, const char **s, size_t *n) {
    json_t *v = json_object_get(rec, key);
    if (!v || (optional && json_is_null(v))) {
        if (optional) {
            *s = "";
            *n = 0;
            return DT_OK;
        }
        return dt_fail(ctx, DT_EINPUT, "missing key '%s'", key);
    }
    if (!json_is_string(v)) return dt_fail(ctx, DT_EINPUT, "key '%s': expected a string", key);
    *s = json_string_value(v);
    *n = json_string_length(v);
    return DT_OK;
}

static int need_eos(dt_ctx *ctx, const dt_record_encoder *r) {
    if (r->enc.eos < 0) return dt_fail(ctx, DT_EINPUT, "the tokenizer has no EOS token to end examples with");
    return DT_OK;
}

static int segs_text(dt_ctx *ctx, dt_record_encoder *r, const json_t *rec) {
    const char *s;
    size_t n;
    int st = get_str(ctx, rec, "text", false, &s, &n);
    if (!st) st = need_eos(ctx, r);
    if (st) return st;
    if (r->enc.add_bos) st = dt_segs_token(ctx, &r->segs, r->enc.bos, true);
    if (!st) st = dt_segs_text(ctx, &r->segs, s, n, true);
    if (!st) st = dt_segs_token(ctx, &r->segs, r->enc.eos, true);
    return st;
}

static int segs_completion(dt_ctx *ctx, dt_record_encoder *r, const json_t *rec) {
    const char *p, *c;
    size_t np, nc;
    int st = get_str(ctx, rec, "prompt", false, &p, &np);
    if (!st) st = get_str(ctx, rec, "completion", false, &c, &nc);
    if (!st) st = need_eos(ctx, r);
    if (st) return st;
    if (r->enc.add_bos) st = dt_segs_token(ctx, &r->segs, r->enc.bos, false);
    if (!st) st = dt_segs_text(ctx, &r->segs, p, np, false);
    if (!st) st = dt_segs_text(ctx, &r->segs, c, nc, true);
    if (!st) st = dt_segs_token(ctx, &r->segs, r->enc.eos, true);
    return st;
}

static int segs_alpaca(dt_ctx *ctx, dt_record_encoder *r, const json_t *rec) {
    const char *ins, *in, *out;
    size_t nins, nin, nout;
    int st = get_str(ctx, rec, "instruction", false, &ins, &nins);
    if (!st) st = get_str(ctx, rec, "input", true, &in, &nin);
    if (!st) st = get_str(ctx, rec, "output", false, &out, &nout);
    if (!st) st = need_eos(ctx, r);
    if (st) return st;
    dt_segs *s = &r->segs;
    if (r->enc.add_bos) st = dt_segs_token(ctx, s, r->enc.bos, false);
    // Stanford Alpaca chooses the prompt by whether input is the empty string.
    if (!st) st = dt_segs_str(ctx, s, nin ? ALPACA_INPUT : ALPACA_NO_INPUT, false);
    if (!st) st = dt_segs_text(ctx, s, ins, nins, false);
    if (!st && nin) st = dt_segs_str(ctx, s, "\n\n### Input:\n", false);
    if (!st && nin) st = dt_segs_text(ctx, s, in, nin, false);
    if (!st) st = dt_segs_str(ctx, s, "\n\n### Response:\n", false);
    if (!st) st = dt_segs_text(ctx, s, out, nout, true);
    if (!st) st = dt_segs_token(ctx, s, r->enc.eos, true);
    return st;
}

// Whether a JSON string is exactly s: records are read with JSON_ALLOW_NUL, so strcmp would take
// "user\u0000x" for "user".
static bool is(const json_t *v, const char *s) {
    size_t n = strlen(s);
    return json_string_length(v) == n && !memcmp(json_string_value(v), s, n);
}

// chat: {"role","content"} with role system/user/assistant; sharegpt: {"from","value"} with from
// human/gpt/system (user/assistant accepted too).
static int read_messages(dt_ctx *ctx, dt_record_encoder *r, dt_rec_format f, const json_t *rec, size_t *nm) {
    bool sg = f == DT_FMT_SHAREGPT;
    const char *key = sg ? "conversations" : "messages", *rk = sg ? "from" : "role", *ck = sg ? "value" : "content";
    json_t *arr = json_object_get(rec, key);
    if (!arr) return dt_fail(ctx, DT_EINPUT, "missing key '%s'", key);
    if (!json_is_array(arr))
        return dt_fail(ctx, DT_EINPUT, "key '%s': expected an array of {%s, %s} objects", key, rk, ck);
    size_t n = json_array_size(arr);
    if (!n) return dt_fail(ctx, DT_EINPUT, "key '%s': the conversation is empty", key);
    if (n > r->msgs_cap) {
        dt_message *p = realloc(r->msgs, n * sizeof *p);
        if (!p) return dt_fail(ctx, DT_ENOMEM, "out of memory");
        r->msgs = p;
        r->msgs_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        if (!json_is_object(m))
            return dt_fail(ctx, DT_EINPUT, "key '%s': expected an array of {%s, %s} objects (message %zu is not an object)",
                           key, rk, ck, i + 1);
        json_t *role = json_object_get(m, rk), *content = json_object_get(m, ck);
        if (!json_is_string(role))
            return dt_fail(ctx, DT_EINPUT, "key '%s', message %zu: '%s' %s", key, i + 1, rk,
                           role ? "must be a string" : "is missing");
        if (!json_is_string(content))
            return dt_fail(ctx, DT_EINPUT, "key '%s', message %zu: '%s' %s", key, i + 1, ck,
                           content ? "must be a string" : "is missing");
        const char *rs = json_string_value(role);
        dt_role ro;
        if (is(role, "system")) ro = DT_ROLE_SYSTEM;
        else if (is(role, sg ? "human" : "user") || (sg && is(role, "user"))) ro = DT_ROLE_USER;
        else if (is(role, sg ? "gpt" : "assistant") || (sg && is(role, "assistant"))) ro = DT_ROLE_ASSISTANT;
        else
            return dt_fail(ctx, DT_EINPUT, "key '%s', message %zu: %s '%s'%s is not one of %s", key, i + 1, rk, rs,
                           strlen(rs) < json_string_length(role) ? " (followed by a NUL byte)" : "",
                           sg ? "human, gpt, system" : "system, user, assistant");
        r->msgs[i] = (dt_message){ro, json_string_value(content), json_string_length(content)};
    }
    *nm = n;
    return DT_OK;
}

// Reads an array of integers; labels may hold -100.
static int read_int_array(dt_ctx *ctx, const json_t *a, const char *key, bool labels, int32_t vocab, bool model,
                          dt_ids *out) {
    const char *what = labels ? "an array of token ids or -100" : "an array of token ids";
    if (!json_is_array(a)) return dt_fail(ctx, DT_EINPUT, "key '%s': expected %s", key, what);
    size_t n = json_array_size(a);
    int st = dt_ids_reserve(ctx, out, n);
    if (st) return st;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v)) return dt_fail(ctx, DT_EINPUT, "key '%s', entry %zu: expected %s", key, i + 1, what);
        json_int_t x = json_integer_value(v);
        bool ok = (labels && x == -100) || (x >= 0 && (vocab ? x < vocab : x <= INT32_MAX));
        if (!ok)
            return dt_fail(ctx, DT_EINPUT, "key '%s', entry %zu: %lld is %s", key, i + 1, (long long)x,
                           !(vocab && x >= vocab) ? "not a token id"
                           : model ? "outside the model's vocabulary (vocab_size)" : "outside the tokenizer's vocabulary");
        out->v[out->n++] = (int32_t)x;
    }
    return DT_OK;
}

static int encode_tokens(dt_ctx *ctx, dt_record_encoder *r, const json_t *rec, dt_ids *ids, dt_ids *labels) {
    json_t *a = json_object_get(rec, "input_ids"), *l = json_object_get(rec, "labels");
    if (!a) return dt_fail(ctx, DT_EINPUT, "missing key 'input_ids'");
    size_t n0 = ids->n;
    int st = read_int_array(ctx, a, "input_ids", false, r->vocab, r->vocab_of_model, ids);
    if (st) return st;
    size_t n = ids->n - n0;
    if (!n) return dt_fail(ctx, DT_EINPUT, "key 'input_ids': the array is empty");
    if (!l || json_is_null(l)) return dt_ids_append(ctx, labels, ids->v + n0, n);
    size_t l0 = labels->n;
    st = read_int_array(ctx, l, "labels", true, r->vocab, r->vocab_of_model, labels);
    if (!st && labels->n - l0 != n)
        st = dt_fail(ctx, DT_EINPUT, "key 'labels': %zu entries for %zu input_ids (they must be aligned)",
                     labels->n - l0, n);
    return st;
}

int dt_record_encode(dt_ctx *ctx, dt_record_encoder *r, dt_rec_format f, const json_t *rec, dt_ids *ids,
                     dt_ids *labels) {
    if (!json_is_object(rec)) return dt_fail(ctx, DT_EINPUT, "expected a JSON object per line");
    if (f == DT_FMT_TOKENS) return encode_tokens(ctx, r, rec, ids, labels);
    if (!json_object_get(rec, MAIN_KEY[f]))
        return dt_fail(ctx, DT_EINPUT, "missing key '%s' (the file's format is %s, from its first record)", MAIN_KEY[f],
                       NAMES[f]);
    if (!r->tok) return dt_fail(ctx, DT_EINTERNAL, "format %s needs a tokenizer", NAMES[f]);
    dt_segs_clear(&r->segs);
    int st;
    switch (f) {
    case DT_FMT_TEXT: st = segs_text(ctx, r, rec); break;
    case DT_FMT_COMPLETION: st = segs_completion(ctx, r, rec); break;
    case DT_FMT_ALPACA: st = segs_alpaca(ctx, r, rec); break;
    case DT_FMT_CHAT:
    case DT_FMT_SHAREGPT: {
        size_t nm = 0;
        st = read_messages(ctx, r, f, rec, &nm);
        if (!st && !r->have_tmpl) st = dt_fail(ctx, DT_EINTERNAL, "no chat template chosen");
        if (!st) st = dt_chat_render(ctx, &r->tmpl, r->msgs, nm, &r->enc, &r->segs);
        break;
    }
    default: st = dt_fail(ctx, DT_EINTERNAL, "format %d cannot be encoded", (int)f);
    }
    if (st) return st;
    return dt_segs_encode(ctx, &r->enc, &r->segs, r->train_on_prompt, ids, labels);
}

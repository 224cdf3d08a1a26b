#include "datasets/chat_template.h"
#include <stdbool.h>
#include <string.h>

static const char *const NAMES[DT_TMPL_COUNT] = {"chatml", "qwen3", "llama3", "llama3.1", "llama2", "mistral", "zephyr",
                                                "alpaca", "mistral-v0.2", "mistral-v0.3", "mistral-nemo"};
static const char *const ROLES[] = {"system", "user", "assistant"};

static const char ALPACA_PREAMBLE[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

const char *dt_chat_tmpl_name(dt_chat_tmpl t) { return t < DT_TMPL_COUNT ? NAMES[t] : "?"; }

int dt_chat_tmpl_parse(dt_ctx *ctx, const char *name, dt_chat_fmt *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < DT_TMPL_COUNT; i++)
        if (!strcmp(name, NAMES[i])) {
            out->kind = (dt_chat_tmpl)i;
            return DT_OK;
        }
    return dt_fail(ctx, DT_EINPUT, "unknown chat template '%s' (expected " DT_CHAT_TEMPLATE_NAMES ")", name);
}

// A ChatML template's default system prompt: a string literal '<|im_start|>system\n...<|im_end|>' whose
// text follows the newline directly, as opposed to '<|im_start|>system\n' + messages[0]['content'].
// The literal's Jinja escapes (\n, \t, \\, \', \") are undone.
static int default_system(dt_ctx *ctx, const char *j, const char *where, char *out, size_t cap) {
    static const char head[] = "<|im_start|>system";
    out[0] = 0;
    for (const char *p = strstr(j, head); p; p = strstr(p + 1, head)) {
        const char *s = p + sizeof head - 1, *end = strstr(s, "<|im_end|>");
        if (s[0] == '\\' && s[1] == 'n') s += 2;
        else if (s[0] == '\n') s += 1;
        else continue;
        char quote = p > j ? p[-1] : 0; // the literal's delimiter
        if ((quote != '\'' && quote != '"') || !end || *s == quote) continue;
        size_t n = 0;
        for (; s < end && *s != quote; s++) {
            char c = *s;
            if (c == '\\' && s + 1 < end) {
                s++;
                c = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
            }
            if (n + 1 >= cap) return dt_fail(ctx, DT_EINPUT, "%s: the template's default system prompt is longer than %zu "
                                             "bytes", where, cap - 1);
            out[n++] = c;
        }
        out[s == end ? n : 0] = 0; // a literal that closes before <|im_end|> is not a whole prompt
        if (s == end) return DT_OK;
    }
    return DT_OK;
}

// Whether an [INST] template without <<SYS>> is Mistral v0.1's, the one render_mistral writes:
// '[INST] ' + content + ' [/INST]', then the answer + EOS with nothing in between. Later Mistral templates
// keep [INST] but not that spacing (v0.3, Nemo: content + "[/INST]" with no space, and " " + the
// trimmed answer), so rendering them as v0.1 would silently train on text the model never sees.
static bool mistral_v01(const char *j) {
    for (const char *p = strstr(j, "[/INST]"); p; p = strstr(p + 1, "[/INST]"))
        if (p == j || p[-1] != ' ') return false;
    return !strstr(j, "' ' + message") && !strstr(j, "\" \" + message");
}

// Whether the Jinja source holds `s`, written with double quotes, or the same with single quotes.
static bool has_q(const char *j, const char *s) {
    if (strstr(j, s)) return true;
    char alt[256];
    size_t n = strlen(s);
    if (n >= sizeof alt) return false;
    for (size_t i = 0; i <= n; i++) alt[i] = s[i] == '"' ? '\'' : s[i];
    return strstr(j, alt) != NULL;
}

// The later Mistral templates, each recognised by the exact expressions that write a user turn (with and
// without the system message) and an answer, and by where the system message goes; an [INST] template
// that matches none of them (e.g. Mixtral 8x22B's ' ' + answer + ' ' + EOS) is refused rather than
// rendered with a near miss.
static dt_chat_tmpl mistral_later(const char *j) {
    // Mistral 7B Instruct v0.2 and Mixtral 8x7B (2024 revision): " [INST] ", system in the FIRST user turn.
    if (has_q(j, "' [INST] ' + message['content'] + ' [/INST]'") &&
        has_q(j, "' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]'") &&
        strstr(j, "loop.first and system_message is defined") && has_q(j, "' ' + message['content'] + eos_token"))
        return DT_TMPL_MISTRAL_V02;
    // v0.3 (also Mistral Large 2407): "[INST] " and no space before [/INST]; system in the LAST message.
    if (has_q(j, "\"[INST] \" + message[\"content\"] + \"[/INST]\"") &&
        has_q(j, "\"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\"") &&
        strstr(j, "loop.last and system_message is defined") && has_q(j, "\" \" + message[\"content\"]|trim + eos_token"))
        return DT_TMPL_MISTRAL_V03;
    // Nemo (Tekken): no spaces at all, the answer untrimmed.
    if (has_q(j, "\"[INST]\" + message[\"content\"] + \"[/INST]\"") &&
        has_q(j, "\"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\"") &&
        strstr(j, "loop.last and system_message is defined") && has_q(j, "{{- message[\"content\"] + eos_token"))
        return DT_TMPL_MISTRAL_NEMO;
    return DT_TMPL_COUNT;
}

int dt_chat_tmpl_detect(dt_ctx *ctx, const char *j, dt_chat_fmt *out) {
    return dt_chat_tmpl_detect_in(ctx, j, "tokenizer_config.json: chat_template", out);
}

int dt_chat_tmpl_detect_in(dt_ctx *ctx, const char *j, const char *where, dt_chat_fmt *out) {
    memset(out, 0, sizeof *out);
    if (strstr(j, "<|im_start|>")) {
        out->kind = strstr(j, "<think>") ? DT_TMPL_QWEN3 : DT_TMPL_CHATML;
        // render_qwen3 follows Qwen3's rule for where reasoning goes (after the last query, in the last
        // answer or one that has reasoning). Other ChatML templates that write <think> place it otherwise
        // (QwQ strips it from every answer and writes no empty block), so they are refused, not rendered
        // as Qwen3's.
        if (out->kind == DT_TMPL_QWEN3 && !strstr(j, "loop.last or (not loop.last and reasoning_content)"))
            return dt_fail(ctx, DT_EINPUT, "%s is a ChatML template with <think> that is not Qwen3's (it lacks Qwen3's "
                           "rule 'loop.last or (not loop.last and reasoning_content)' for where reasoning is "
                           "written, as in QwQ, which drops it from every answer); name a template with "
                           "data.chat_template (" DT_CHAT_TEMPLATE_NAMES ") only if its text is what the model "
                           "expects", where);
        if (out->kind == DT_TMPL_CHATML) {
            // ChatML itself has no BOS, but some models' templates start with {{bos_token}}: without it the
            // model would be trained (and prompted) without the first token its template always writes.
            out->bos = strstr(j, "bos_token") != NULL;
            return default_system(ctx, j, where, out->default_system, sizeof out->default_system);
        }
    } else if (strstr(j, "<|start_header_id|>")) {
        out->kind = strstr(j, "Cutting Knowledge Date") ? DT_TMPL_LLAMA31 : DT_TMPL_LLAMA3;
    } else if (strstr(j, "[INST]")) {
        out->kind = strstr(j, "<<SYS>>") ? DT_TMPL_LLAMA2 : DT_TMPL_MISTRAL;
        if (out->kind == DT_TMPL_MISTRAL && !mistral_v01(j)) {
            out->kind = mistral_later(j);
            if (out->kind == DT_TMPL_COUNT)
                return dt_fail(ctx, DT_EINPUT, "%s is an [INST] template that is not Mistral v0.1's (it writes no space "
                               "before [/INST] or a space before the answer) nor one of the later Mistral templates "
                               "built in (v0.2, v0.3, Nemo: their exact user, system and answer expressions); name a "
                               "template with data.chat_template (" DT_CHAT_TEMPLATE_NAMES ") only if its text is "
                               "what the model expects", where);
        }
    } else if (strstr(j, "<|user|>") && (strstr(j, "eos_token") || strstr(j, "</s>")) && !strstr(j, "<|end|>")) {
        out->kind = DT_TMPL_ZEPHYR; // Phi-3 also writes <|user|> but ends turns with <|end|>, zephyr with the EOS
    } else if (strstr(j, "### Instruction")) {
        out->kind = DT_TMPL_ALPACA;
    } else {
        return dt_fail(ctx, DT_EINPUT, "%s is none of the built-in templates (" DT_CHAT_TEMPLATE_NAMES "); name one "
                       "with data.chat_template", where);
    }
    return DT_OK;
}

// Python's str.strip() whitespace (what Jinja's trim filter and .strip() use), for UTF-8 text.
static bool py_space(unsigned c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Decodes the code point at s[i] (the text is valid UTF-8: jansson checks it); returns its length.
static size_t cp_at(const unsigned char *s, size_t i, unsigned *c) {
    unsigned b = s[i];
    size_t k = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    unsigned v = k == 1 ? b : k == 2 ? (b & 0x1F) : k == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t j = 1; j < k; j++) v = (v << 6) | (s[i + j] & 0x3F);
    *c = v;
    return k;
}

typedef struct { const char *p; size_t n; } str;

static str strip(str s) {
    const unsigned char *u = (const unsigned char *)s.p;
    size_t b = 0, e = s.n;
    unsigned c;
    while (b < e) {
        size_t k = cp_at(u, b, &c);
        if (!py_space(c)) break;
        b += k;
    }
    while (e > b) {
        size_t st = e - 1;
        while (st > b && (u[st] & 0xC0) == 0x80) st--;
        cp_at(u, st, &c);
        if (!py_space(c)) break;
        e = st;
    }
    return (str){s.p + b, e - b};
}

static str lstrip_nl(str s) {
    while (s.n && s.p[0] == '\n') s.p++, s.n--;
    return s;
}
static str rstrip_nl(str s) {
    while (s.n && s.p[s.n - 1] == '\n') s.n--;
    return s;
}

static const char *find(str s, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= s.n; i++)
        if (!memcmp(s.p + i, needle, k)) return s.p + i;
    return NULL;
}
static const char *rfind(str s, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = s.n + 1; i-- > k;)
        if (!memcmp(s.p + i - k, needle, k)) return s.p + i - k;
    return NULL;
}

static bool starts(str s, const char *p) { size_t k = strlen(p); return s.n >= k && !memcmp(s.p, p, k); }
static bool ends(str s, const char *p) { size_t k = strlen(p); return s.n >= k && !memcmp(s.p + s.n - k, p, k); }

#define TXT(s, trained) do { int st_ = dt_segs_str(ctx, out, (s), (trained)); if (st_) return st_; } while (0)
#define STR(x, trained) do { int st_ = dt_segs_text(ctx, out, (x).p, (x).n, (trained)); if (st_) return st_; } while (0)
#define TOK(id, trained) do { int st_ = dt_segs_token(ctx, out, (id), (trained)); if (st_) return st_; } while (0)

static str content(const dt_message *m) { return (str){m->text, m->len}; }

static int render_chatml(dt_ctx *ctx, const dt_chat_fmt *f, const dt_message *m, size_t n, const dt_seg_encoder *e,
                         dt_segs *out) {
    const char *default_system = f->default_system;
    if (f->bos && e->bos >= 0) TOK(e->bos, false);
    if (default_system[0] && m[0].role != DT_ROLE_SYSTEM) {
        TXT("<|im_start|>system\n", false);
        TXT(default_system, false);
        TXT("<|im_end|>\n", false);
    }
    for (size_t i = 0; i < n; i++) {
        bool a = m[i].role == DT_ROLE_ASSISTANT;
        TXT("<|im_start|>", false);
        TXT(ROLES[m[i].role], false);
        TXT("\n", false);
        STR(content(&m[i]), a);
        TXT("<|im_end|>", a);
        TXT("\n", false);
    }
    return DT_OK;
}

static int render_qwen3(dt_ctx *ctx, const dt_message *m, size_t n, dt_segs *out) {
    // The last user message that is not a wrapped tool response; assistant messages after it keep their
    // reasoning (the template's ns.last_query_index).
    size_t last_query = n - 1;
    for (size_t i = n; i-- > 0;) {
        str c = content(&m[i]);
        if (m[i].role == DT_ROLE_USER && !(starts(c, "<tool_response>") && ends(c, "</tool_response>"))) {
            last_query = i;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        str c = content(&m[i]);
        if (m[i].role != DT_ROLE_ASSISTANT) {
            TXT("<|im_start|>", false);
            TXT(ROLES[m[i].role], false);
            TXT("\n", false);
            STR(c, false);
            TXT("<|im_end|>\n", false);
            continue;
        }
        str reasoning = {"", 0};
        const char *close_last = rfind(c, "</think>");
        if (close_last) {
            const char *close_first = find(c, "</think>");
            str after = {close_last + 8, (size_t)(c.p + c.n - close_last - 8)};
            str before = rstrip_nl((str){c.p, (size_t)(close_first - c.p)});
            const char *open = rfind(before, "<think>");
            if (open) before = (str){open + 7, (size_t)(before.p + before.n - open - 7)};
            reasoning = lstrip_nl(before);
            c = lstrip_nl(after);
        }
        TXT("<|im_start|>assistant\n", false);
        if (i > last_query && (i == n - 1 || reasoning.n)) {
            TXT("<think>\n", true);
            STR(rstrip_nl(lstrip_nl(reasoning)), true);
            TXT("\n</think>\n\n", true);
            c = lstrip_nl(c);
        }
        STR(c, true);
        TXT("<|im_end|>", true);
        TXT("\n", false);
    }
    return DT_OK;
}

static int render_llama3(dt_ctx *ctx, bool v31, const dt_message *m, size_t n, const dt_seg_encoder *e, dt_segs *out) {
    if (e->bos >= 0) TOK(e->bos, false);
    if (v31) { // the system header is always there; the first message goes into it when it is a system one
        TXT("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024"
            "\n\n", false);
        if (m[0].role == DT_ROLE_SYSTEM) {
            STR(strip(content(&m[0])), false);
            m++, n--;
        }
        TXT("<|eot_id|>", false);
    }
    for (size_t i = 0; i < n; i++) {
        bool a = m[i].role == DT_ROLE_ASSISTANT;
        TXT("<|start_header_id|>", false);
        TXT(ROLES[m[i].role], false);
        TXT("<|end_header_id|>\n\n", false);
        STR(strip(content(&m[i])), a);
        TXT("<|eot_id|>", a);
    }
    return DT_OK;
}

// Llama 2 and Mistral v0.1 raise unless the messages (after Llama 2's optional leading system) go
// user, assistant, user, ...
static int check_alternation(dt_ctx *ctx, dt_chat_tmpl t, const dt_message *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == DT_ROLE_SYSTEM)
            return dt_fail(ctx, DT_EINPUT, "chat template %s: %s", NAMES[t],
                           t == DT_TMPL_MISTRAL ? "system messages are not supported (only user and assistant)"
                                                : "a system message is allowed only as the first message");
        if ((m[i].role == DT_ROLE_USER) != (i % 2 == 0))
            return dt_fail(ctx, DT_EINPUT, "chat template %s: conversation roles must alternate user/assistant/"
                           "user/assistant/... (message %zu is %s)", NAMES[t], i + 1, ROLES[m[i].role]);
    }
    return DT_OK;
}

static int render_llama2(dt_ctx *ctx, const dt_message *m, size_t n, const dt_seg_encoder *e, dt_segs *out) {
    str sys = {NULL, 0};
    if (n && m[0].role == DT_ROLE_SYSTEM) {
        sys = content(&m[0]);
        m++, n--;
    }
    int st = check_alternation(ctx, DT_TMPL_LLAMA2, m, n);
    if (st) return st;
    for (size_t i = 0; i < n; i++) {
        str c = content(&m[i]);
        if (m[i].role == DT_ROLE_USER) {
            if (e->bos >= 0) TOK(e->bos, false);
            TXT("[INST] ", false);
            if (i == 0 && sys.p) {
                // content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + user, then .strip(): the front starts
                // with '<', so only the end can lose whitespace, reaching into the "\n\n" when the user
                // text is all whitespace.
                str u = strip(c);
                TXT("<<SYS>>\n", false);
                STR(sys, false);
                TXT(u.n ? "\n<</SYS>>\n\n" : "\n<</SYS>>", false);
                STR(u, false);
            } else {
                STR(strip(c), false);
            }
            TXT(" [/INST]", false);
        } else {
            TXT(" ", true);
            STR(strip(c), true);
            TXT(" ", true);
            if (e->eos < 0) return dt_fail(ctx, DT_EINPUT, "chat template llama2 needs an EOS token; the tokenizer has none");
            TOK(e->eos, true);
        }
    }
    return DT_OK;
}

static int render_mistral(dt_ctx *ctx, const dt_message *m, size_t n, const dt_seg_encoder *e, dt_segs *out) {
    int st = check_alternation(ctx, DT_TMPL_MISTRAL, m, n);
    if (st) return st;
    if (e->bos >= 0) TOK(e->bos, false);
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == DT_ROLE_USER) {
            TXT("[INST] ", false);
            STR(content(&m[i]), false);
            TXT(" [/INST]", false);
        } else {
            STR(content(&m[i]), true);
            if (e->eos < 0) return dt_fail(ctx, DT_EINPUT, "chat template mistral needs an EOS token; the tokenizer has none");
            TOK(e->eos, true);
        }
    }
    return DT_OK;
}

// Mistral v0.2 (2024), v0.3 and Nemo. All raise unless the messages after an optional leading system
// message go user, assistant, user, ... (v0.3/Nemo skip tool messages, which deltatune has none of).
// v0.2 puts the system message into the first user turn. v0.3 and Nemo put it only into a user message
// that is the conversation's last message ("loop.last"), so for a conversation that ends with an answer,
// as every training example does, their Jinja drops the system message without a word; rendering that
// would silently train without the user's system prompt, so such a conversation is refused instead.
static int render_mistral_later(dt_ctx *ctx, dt_chat_tmpl t, const dt_message *m, size_t n, const dt_seg_encoder *e,
                                dt_segs *out) {
    str sys = {NULL, 0};
    if (m[0].role == DT_ROLE_SYSTEM) {
        sys = content(&m[0]);
        m++, n--;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == DT_ROLE_SYSTEM)
            return dt_fail(ctx, DT_EINPUT, "chat template %s: a system message is allowed only as the first message",
                           NAMES[t]);
        if ((m[i].role == DT_ROLE_USER) != (i % 2 == 0))
            return dt_fail(ctx, DT_EINPUT, "chat template %s: after the optional system message, conversation roles "
                           "must alternate user/assistant/user/assistant/... (message %zu is %s)", NAMES[t],
                           i + 1 + (sys.p != NULL), ROLES[m[i].role]);
    }
    if (sys.p && (t == DT_TMPL_MISTRAL_V02 ? n == 0 : n == 0 || m[n - 1].role != DT_ROLE_USER))
        return dt_fail(ctx, DT_EINPUT, "chat template %s: the model's template writes the system message only %s, so "
                       "it would be left out of this conversation; drop the system message or move its text into "
                       "the first user message", NAMES[t],
                       t == DT_TMPL_MISTRAL_V02 ? "into the first user message" :
                       "into a user message that ends the conversation, never before an answer");
    if (e->eos < 0) return dt_fail(ctx, DT_EINPUT, "chat template %s needs an EOS token; the tokenizer has none", NAMES[t]);
    if (e->bos >= 0) TOK(e->bos, false);
    const char *open = t == DT_TMPL_MISTRAL_V02 ? " [INST] " : t == DT_TMPL_MISTRAL_V03 ? "[INST] " : "[INST]";
    for (size_t i = 0; i < n; i++) {
        str c = content(&m[i]);
        if (m[i].role == DT_ROLE_USER) {
            TXT(open, false);
            if (sys.p && (t == DT_TMPL_MISTRAL_V02 ? i == 0 : i == n - 1)) {
                STR(sys, false);
                TXT("\n\n", false);
            }
            STR(c, false);
            TXT(t == DT_TMPL_MISTRAL_V02 ? " [/INST]" : "[/INST]", false);
        } else {
            // The space v0.2/v0.3 write before the answer is trained with it, as llama2's spaces are: with
            // SentencePiece it is the "▁" of the answer's first token, so cutting it into the prompt would
            // tokenise the answer differently from the whole string.
            if (t != DT_TMPL_MISTRAL_NEMO) TXT(" ", true);
            STR(t == DT_TMPL_MISTRAL_V03 ? strip(c) : c, true);
            TOK(e->eos, true);
        }
    }
    return DT_OK;
}

static int render_zephyr(dt_ctx *ctx, const dt_message *m, size_t n, const dt_seg_encoder *e, dt_segs *out) {
    if (e->eos < 0) return dt_fail(ctx, DT_EINPUT, "chat template zephyr needs an EOS token; the tokenizer has none");
    if (e->add_bos) TOK(e->bos, false);
    for (size_t i = 0; i < n; i++) {
        bool a = m[i].role == DT_ROLE_ASSISTANT;
        TXT("<|", false);
        TXT(ROLES[m[i].role], false);
        TXT("|>\n", false);
        STR(content(&m[i]), a);
        TOK(e->eos, a);
        TXT("\n", false);
    }
    return DT_OK;
}

static int render_alpaca(dt_ctx *ctx, const dt_message *m, size_t n, const dt_seg_encoder *e, dt_segs *out) {
    if (e->eos < 0) return dt_fail(ctx, DT_EINPUT, "chat template alpaca needs an EOS token; the tokenizer has none");
    if (e->add_bos) TOK(e->bos, false);
    if (n && m[0].role == DT_ROLE_SYSTEM) {
        STR(content(&m[0]), false);
        m++, n--;
    } else {
        TXT(ALPACA_PREAMBLE, false);
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == DT_ROLE_SYSTEM)
            return dt_fail(ctx, DT_EINPUT, "chat template alpaca: a system message is allowed only as the first message");
        bool a = m[i].role == DT_ROLE_ASSISTANT;
        TXT(a ? "\n\n### Response:\n" : "\n\n### Instruction:\n", false);
        STR(content(&m[i]), a);
        if (a) TOK(e->eos, true);
    }
    return DT_OK;
}

int dt_chat_render(dt_ctx *ctx, const dt_chat_fmt *f, const dt_message *m, size_t n, const dt_seg_encoder *e,
                   dt_segs *out) {
    if (!n) return dt_fail(ctx, DT_EINPUT, "empty conversation");
    dt_chat_tmpl t = f->kind;
    switch (t) {
    case DT_TMPL_CHATML: return render_chatml(ctx, f, m, n, e, out);
    case DT_TMPL_QWEN3: return render_qwen3(ctx, m, n, out);
    case DT_TMPL_LLAMA3: return render_llama3(ctx, false, m, n, e, out);
    case DT_TMPL_LLAMA31: return render_llama3(ctx, true, m, n, e, out);
    case DT_TMPL_LLAMA2: return render_llama2(ctx, m, n, e, out);
    case DT_TMPL_MISTRAL: return render_mistral(ctx, m, n, e, out);
    case DT_TMPL_ZEPHYR: return render_zephyr(ctx, m, n, e, out);
    case DT_TMPL_ALPACA: return render_alpaca(ctx, m, n, e, out);
    case DT_TMPL_MISTRAL_V02:
    case DT_TMPL_MISTRAL_V03:
    case DT_TMPL_MISTRAL_NEMO: return render_mistral_later(ctx, t, m, n, e, out);
    default: return dt_fail(ctx, DT_EINTERNAL, "chat template %d out of range", (int)t);
    }
}

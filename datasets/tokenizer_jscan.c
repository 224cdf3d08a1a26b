// The in-place JSON scanner of tokenizer_jscan.h.
#include <stdlib.h>
#include <string.h>
#include "datasets/tokenizer_jscan.h"

static int fail_at(dt_ctx *ctx, const tk_js *js, const char *what) {
    return dt_fail(ctx, DT_EINPUT, "%s: byte %zu: %s", js->path, (size_t)(js->p - js->base), what);
}

char tk_js_peek(tk_js *js) {
    while (js->p < js->end && (*js->p == ' ' || *js->p == '\n' || *js->p == '\r' || *js->p == '\t')) js->p++;
    return js->p < js->end ? *js->p : 0;
}

int tk_js_expect(dt_ctx *ctx, tk_js *js, char c, const char *what) {
    if (tk_js_peek(js) != c) return fail_at(ctx, js, what);
    js->p++;
    return DT_OK;
}

static int hex4(const char *p, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

int tk_js_string(dt_ctx *ctx, tk_js *js, tk_buf *out) {
    int rc = tk_js_expect(ctx, js, '"', "expected a string");
    if (rc) return rc;
    out->n = 0;
    for (;;) {
        const char *s = js->p;
        while (js->p < js->end && *js->p != '"' && *js->p != '\\' && (unsigned char)*js->p >= 0x20) js->p++;
        if ((rc = tk_buf_put(ctx, out, s, (size_t)(js->p - s)))) return rc;
        if (js->p >= js->end) return fail_at(ctx, js, "unterminated string");
        char c = *js->p++;
        if (c == '"') return DT_OK;
        if (c != '\\') return fail_at(ctx, js, "control character in a string");
        if (js->p >= js->end) return fail_at(ctx, js, "unterminated string");
        char e = *js->p++, ch[4];
        int len = 1;
        switch (e) {
        case '"': case '\\': case '/': ch[0] = e; break;
        case 'b': ch[0] = '\b'; break;
        case 'f': ch[0] = '\f'; break;
        case 'n': ch[0] = '\n'; break;
        case 'r': ch[0] = '\r'; break;
        case 't': ch[0] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (js->end - js->p < 4 || hex4(js->p, &cp)) return fail_at(ctx, js, "bad \\u escape");
            js->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) { // a surrogate pair spells one code point
                if (js->end - js->p < 6 || js->p[0] != '\\' || js->p[1] != 'u' || hex4(js->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return fail_at(ctx, js, "unpaired surrogate in a \\u escape");
                js->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return fail_at(ctx, js, "unpaired surrogate in a \\u escape");
            }
            len = tk_utf8_put(cp, ch);
            break;
        }
        default:
            return fail_at(ctx, js, "bad escape in a string");
        }
        if ((rc = tk_buf_put(ctx, out, ch, (size_t)len))) return rc;
    }
}

int tk_js_int(dt_ctx *ctx, tk_js *js, int64_t *v) {
    tk_js_peek(js);
    const char *s = js->p;
    bool neg = js->p < js->end && *js->p == '-';
    if (neg) js->p++;
    int64_t x = 0;
    const char *d = js->p;
    while (js->p < js->end && *js->p >= '0' && *js->p <= '9' && x < ((int64_t)1 << 40)) x = x * 10 + (*js->p++ - '0');
    if (js->p == d || (js->p < js->end && (*js->p == '.' || *js->p == 'e' || *js->p == 'E' ||
                                           (*js->p >= '0' && *js->p <= '9')))) {
        js->p = s;
        return fail_at(ctx, js, "expected an integer id");
    }
    *v = neg ? -x : x;
    return DT_OK;
}

int tk_js_more(dt_ctx *ctx, tk_js *js, char close, bool *more, bool first) {
    char c = tk_js_peek(js);
    if (c == close) {
        js->p++;
        *more = false;
        return DT_OK;
    }
    if (!first) {
        if (c != ',') return fail_at(ctx, js, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
        js->p++;
    }
    *more = true;
    return DT_OK;
}

int tk_js_skip(dt_ctx *ctx, tk_js *js) {
    // Walks brackets with a depth counter; strings are skipped whole so their brackets do not count.
    size_t depth = 0;
    do {
        char c = tk_js_peek(js);
        if (!c) return fail_at(ctx, js, "unexpected end of file");
        if (c == '"') {
            js->p++;
            while (js->p < js->end && *js->p != '"') js->p += *js->p == '\\' ? 2 : 1;
            if (js->p >= js->end) return fail_at(ctx, js, "unterminated string");
            js->p++;
        } else if (c == '{' || c == '[') {
            depth++;
            js->p++;
        } else if (c == '}' || c == ']') {
            if (!depth) return fail_at(ctx, js, "unbalanced bracket");
            depth--;
            js->p++;
        } else if (c == ',' || c == ':') {
            if (!depth) return fail_at(ctx, js, "expected a value");
            js->p++;
        } else {
            while (js->p < js->end && strchr("{}[],: \t\r\n\"", *js->p) == NULL) js->p++;
        }
    } while (depth);
    return DT_OK;
}

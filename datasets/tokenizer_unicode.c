// UTF-8 and Unicode character classes as the Hugging Face (Rust) tokenizers see them.
#include <string.h>
#include <utf8proc.h>
#include "datasets/tokenizer_impl.h"

// Length of the sequence led by byte c, and the valid range of its second byte (Unicode Table 3-7).
static int utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return 2;
    if (c < 0xF0) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F; // no surrogates
        return 3;
    }
    if (c < 0xF5) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F; // nothing above U+10FFFF
        return 4;
    }
    return 0;
}

// Bytes of the valid sequence at s, or 0; *sub gets the length of its longest valid prefix (>= 1).
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *sub) {
    unsigned char lo, hi;
    int len = utf8_lead(s[0], &lo, &hi);
    *sub = 1;
    if (len == 0) return 0;
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n) return 0;
        unsigned char c = s[k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return 0;
        *sub = (size_t)k + 1;
    }
    return (size_t)len;
}

size_t tk_utf8_valid_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, sub;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = utf8_seq(s + i, n - i, &sub);
        if (!len) return i;
        i += len;
    }
    return n;
}

uint32_t tk_utf8_next(const char *str, size_t n, size_t *adv) {
    const unsigned char *s = (const unsigned char *)str;
    (void)n;
    if (s[0] < 0x80) { *adv = 1; return s[0]; }
    if (s[0] < 0xE0) { *adv = 2; return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F); }
    if (s[0] < 0xF0) {
        *adv = 3;
        return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    }
    *adv = 4;
    return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
           (s[3] & 0x3F);
}

uint32_t tk_utf8_prev(const char *str, size_t n, size_t *back) {
    size_t k = 1;
    while (k < n && k < 4 && ((unsigned char)str[n - k] & 0xC0) == 0x80) k++;
    *back = k;
    size_t adv;
    return tk_utf8_next(str + n - k, k, &adv);
}

int tk_utf8_put(uint32_t cp, char out[4]) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// The White_Space property (PropList.txt); Rust's char::is_whitespace and regex \s use exactly this.
bool tk_is_white_space(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Rust regex's Unicode \w: Alphabetic, marks, decimal digits, connector punctuation, joiners.
bool tk_is_word_char(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (cp == 0x200C || cp == 0x200D) return true;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

int tk_utf8_lossy(dt_ctx *ctx, tk_buf *out, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, sub;
    while (i < n) {
        size_t start = i;
        while (i < n) {
            if (s[i] < 0x80) { i++; continue; }
            size_t len = utf8_seq(s + i, n - i, &sub);
            if (!len) break;
            i += len;
        }
        int rc = tk_buf_put(ctx, out, s + start, i - start);
        if (rc) return rc;
        if (i < n) {
            utf8_seq(s + i, n - i, &sub);
            if ((rc = tk_buf_put(ctx, out, "\xEF\xBF\xBD", 3))) return rc;
            i += sub;
        }
    }
    return DT_OK;
}

void tk_byte_level_table(uint16_t byte_to_cp[256]) {
    uint16_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_cp[b] = printable ? (uint16_t)b : next++;
    }
}

// The scalar syntax a recipe accepts for booleans and numbers, and how messages describe values.
//
// libyaml hands every scalar over as text. A YAML 1.1 resolver calls "1e-5" a string (its float form
// needs a dot), but everyone writing a learning rate means a number, so any decimal or exponent form
// that strtod reads completely is a number here. Hex, octal, "1_000", ".inf" and ".nan" are not.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "recipes/recipe_internal.h"

bool dt_rscalar_bool(const char *s, bool *out) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!strcmp(s, yes[i])) { *out = true; return true; }
        if (!strcmp(s, no[i])) { *out = false; return true; }
    }
    return false;
}

static const char *digits(const char *s) {
    while (isdigit((unsigned char)*s)) s++;
    return s;
}

bool dt_rscalar_int(const char *s, int64_t *out) {
    const char *p = s + (*s == '+' || *s == '-');
    const char *end = digits(p);
    // A leading zero is refused because YAML 1.1 reads "010" as octal 8.
    if (end == p || *end || (p[0] == '0' && end - p > 1)) return false;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return false;
    *out = v;
    return true;
}

bool dt_rscalar_float(const char *s, double *out) {
    const char *p = s + (*s == '+' || *s == '-');
    const char *q = digits(p);
    size_t mantissa = (size_t)(q - p);
    if (*q == '.') {
        const char *f = digits(q + 1);
        mantissa += (size_t)(f - q - 1);
        q = f;
    }
    if (!mantissa) return false;
    if (*q == 'e' || *q == 'E') {
        const char *e = q + 1 + (q[1] == '+' || q[1] == '-');
        q = digits(e);
        if (q == e) return false;
    }
    if (*q) return false;
    double v = strtod(s, NULL);
    if (!isfinite(v)) return false;
    *out = v;
    return true;
}

void dt_rdescribe(const dt_ynode *n, char *buf, size_t size) {
    if (n->kind == DT_YSEQ) { snprintf(buf, size, "a list"); return; }
    if (n->kind == DT_YMAP) { snprintf(buf, size, "a mapping"); return; }
    if (dt_ynode_is_null(n)) { snprintf(buf, size, "null"); return; }
    // Long values are cut so that the message stays one readable line.
    int len = (int)strlen(n->text), shown = len > 60 ? 57 : len;
    const char *more = len > 60 ? "..." : "";
    if (n->plain)
        snprintf(buf, size, "'%.*s%s'", shown, n->text, more);
    else
        snprintf(buf, size, "the quoted string \"%.*s%s\"", shown, n->text, more);
}

void dt_rrange(const dt_rkey *k, char *buf, size_t size) {
    bool lo_open = k->flags & DT_RF_LO_OPEN, hi_open = k->flags & DT_RF_HI_OPEN;
    if (k->hi >= 1e18)   // no upper bound worth stating
        snprintf(buf, size, "%s %g", lo_open ? ">" : ">=", k->lo);
    else if (!lo_open && !hi_open && k->kind != DT_RK_FLOAT && k->kind != DT_RK_FLOAT2)
        snprintf(buf, size, "from %.0f to %.0f", k->lo, k->hi);   // integers: no 1e+12
    else
        snprintf(buf, size, "in %c%g, %g%c", lo_open ? '(' : '[', k->lo, k->hi, hi_open ? ')' : ']');
}

// PEFT's rank_pattern / alpha_pattern: reading, writing back and matching module names (see lora_pattern.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "peft/lora_pattern.h"
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dt_lora_pattern_free(dt_lora_pattern *p) {
    for (int i = 0; i < p->n; i++) free(p->keys[i]);
    free(p->keys);
    free(p->values);
    free(p->integral);
    memset(p, 0, sizeof *p);
}

int dt_lora_pattern_add(dt_ctx *ctx, dt_lora_pattern *p, const char *key, double value, bool integral) {
    // Patterns hold a handful of keys: growing by one each time is simplest.
    char **k = realloc(p->keys, (size_t)(p->n + 1) * sizeof *k);
    if (k) p->keys = k;
    double *v = k ? realloc(p->values, (size_t)(p->n + 1) * sizeof *v) : NULL;
    if (v) p->values = v;
    bool *in = v ? realloc(p->integral, (size_t)(p->n + 1) * sizeof *in) : NULL;
    if (in) p->integral = in;
    char *dup = in ? strdup(key) : NULL;
    if (!dup) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    p->keys[p->n] = dup;
    p->values[p->n] = value;
    p->integral[p->n] = integral;
    p->n++;
    return DT_OK;
}

int dt_lora_pattern_copy(dt_ctx *ctx, dt_lora_pattern *dst, const dt_lora_pattern *src) {
    memset(dst, 0, sizeof *dst);
    for (int i = 0; i < src->n; i++) {
        int rc = dt_lora_pattern_add(ctx, dst, src->keys[i], src->values[i], src->integral[i]);
        if (rc) { dt_lora_pattern_free(dst); return rc; }
    }
    return DT_OK;
}

int dt_lora_pattern_from_json(dt_ctx *ctx, const json_t *cfg, const char *path, const char *key, bool ranks,
                              dt_lora_pattern *out) {
    dt_lora_pattern_free(out);
    json_t *obj = json_object_get(cfg, key);
    if (!obj || json_is_null(obj)) return DT_OK; // PEFT's default is {}
    if (!json_is_object(obj))
        return dt_fail(ctx, DT_EINPUT, "%s: key '%s': expected an object of {\"module regex\": %s}", path, key,
                       ranks ? "rank" : "alpha");
    const char *k;
    json_t *v;
    int rc = DT_OK;
    json_object_foreach(obj, k, v) {
        // PEFT would build nn.Linear(in, r) with r as given; only a positive integer makes sense, and the
        // recipe's bound on method.r (65536) keeps a typo from asking for an absurd allocation.
        bool ok = ranks ? json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 65536 : json_is_number(v);
        if (!ok) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            rc = dt_fail(ctx, DT_EINPUT, "%s: key '%s': pattern '%s': expected %s, got %s", path, key, k,
                         ranks ? "a positive integer rank (1 to 65536)" : "a number (the module's alpha)", text ? text : "?");
            free(text);
            break;
        }
        if ((rc = dt_lora_pattern_add(ctx, out, k, json_number_value(v), json_is_integer(v)))) break;
    }
    if (!rc) { // every key must compile, even one that no module of this model reaches
        char what[4200];
        snprintf(what, sizeof what, "%s: key '%s'", path, key);
        dt_lora_matcher *m;
        if (!(rc = dt_lora_matcher_new(ctx, out, what, &m))) dt_lora_matcher_free(m);
    }
    if (rc) dt_lora_pattern_free(out);
    return rc;
}

json_t *dt_lora_pattern_to_json(const dt_lora_pattern *p) {
    json_t *o = json_object(); // jansson keeps insertion order, so the file's order survives
    for (int i = 0; o && i < p->n; i++)
        json_object_set_new(o, p->keys[i], p->integral[i] ? json_integer((json_int_t)p->values[i]) : json_real(p->values[i]));
    return o;
}

struct dt_lora_matcher {
    const dt_lora_pattern *p;
    pcre2_code **code;       // (p->n) "(.*\.)?(key)$", anchored at the start like Python's re.match
    pcre2_match_data *md;
    char *what;
};

void dt_lora_matcher_free(dt_lora_matcher *m) {
    if (!m) return;
    for (int i = 0; m->code && i < m->p->n; i++) pcre2_code_free(m->code[i]);
    free(m->code);
    pcre2_match_data_free(m->md);
    free(m->what);
    free(m);
}

// What PEFT's get_pattern_key hands re.match: an optional prefix ending in a dot, then the key as a
// group, then the end of the name. The group keeps an alternation in the key ("q_proj|v_proj") whole.
static const char PREFIX[] = "(.*\\.)?(", SUFFIX[] = ")$";

int dt_lora_matcher_new(dt_ctx *ctx, const dt_lora_pattern *p, const char *what, dt_lora_matcher **out) {
    *out = NULL;
    dt_lora_matcher *m = calloc(1, sizeof *m);
    if (!m) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    m->p = p;
    m->code = calloc((size_t)(p->n ? p->n : 1), sizeof *m->code);
    m->md = pcre2_match_data_create(1, NULL); // only whether it matches counts
    m->what = strdup(what);
    if (!m->code || !m->md || !m->what) { dt_lora_matcher_free(m); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    for (int i = 0; i < p->n; i++) {
        size_t kl = strlen(p->keys[i]), n = sizeof PREFIX - 1 + kl + sizeof SUFFIX - 1;
        char *expr = malloc(n + 1);
        if (!expr) { dt_lora_matcher_free(m); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
        snprintf(expr, n + 1, "%s%s%s", PREFIX, p->keys[i], SUFFIX);
        int err;
        PCRE2_SIZE at;
        // Python 3 matches str patterns with Unicode semantics (\w, \d, case folding): PCRE2_UTF | PCRE2_UCP.
        m->code[i] = pcre2_compile((PCRE2_SPTR)expr, n, PCRE2_ANCHORED | PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
        free(expr);
        if (!m->code[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            // The offset PCRE2 reports is in the wrapped expression; shown relative to the key.
            size_t off = at > sizeof PREFIX - 1 ? at - (sizeof PREFIX - 1) : 0;
            int rc = dt_fail(ctx, DT_EINPUT, "%s: pattern '%s': expected a regular expression (%s at offset %zu)", what,
                             p->keys[i], (const char *)msg, off > kl ? kl : off);
            dt_lora_matcher_free(m);
            return rc;
        }
    }
    *out = m;
    return DT_OK;
}

int dt_lora_matcher_find(dt_ctx *ctx, const dt_lora_matcher *m, const char *name, int *index) {
    *index = -1;
    for (int i = 0; i < m->p->n; i++) {
        int r = pcre2_match(m->code[i], (PCRE2_SPTR)name, strlen(name), 0, 0, m->md, NULL);
        if (r == PCRE2_ERROR_NOMATCH) continue;
        if (r < 0) { // a match limit hit by a pathological pattern; Python would hang instead
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(r, msg, sizeof msg);
            return dt_fail(ctx, DT_EINPUT, "%s: pattern '%s': matching module '%s' failed: %s", m->what, m->p->keys[i], name,
                           (const char *)msg);
        }
        *index = i; // the first key that matches wins, as in get_pattern_key
        return DT_OK;
    }
    return DT_OK;
}

int dt_lora_matcher_value(dt_ctx *ctx, const dt_lora_matcher *m, const char *name, double dflt, double *value) {
    int i, rc = dt_lora_matcher_find(ctx, m, name, &i);
    *value = !rc && i >= 0 ? m->p->values[i] : dflt;
    return rc;
}

// The option parser behind every command (see cli_opts.h).
#include "tools/cli_opts.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "recipes/recipe_internal.h"

void dt_cli_usage(const dt_cli *c, FILE *f) {
    fprintf(f, "usage: deltatune %s %s\n", c->cmd, c->synopsis);
    if (c->about) fprintf(f, "\n%s\n", c->about);
    if (c->positional) fprintf(f, "\n%s\n", c->positional);
    fprintf(f, "\noptions:\n");
    for (int i = 0; i < c->n_opts; i++) {
        const dt_opt *o = &c->opts[i];
        char left[96];
        int n = snprintf(left, sizeof left, "%s%s%s", o->name, o->alias ? ", " : "", o->alias ? o->alias : "");
        if (o->kind != DT_OPT_FLAG && n < (int)sizeof left) snprintf(left + n, sizeof left - (size_t)n, " %s", o->arg);
        // An option wider than the column gets a line of its own, so the help texts stay aligned.
        if (strlen(left) > 28) fprintf(f, "  %s\n  %-28s", left, "");
        else fprintf(f, "  %-28s", left);
        fprintf(f, " %s%s\n", o->help, o->kind == DT_OPT_LIST ? " (repeatable)" : "");
    }
    fprintf(f, "  %-28s %s\n", "-h, --help", "print this help and exit");
}

int dt_cli_bad(const dt_cli *c, const char *fmt, ...) {
    fprintf(stderr, "deltatune %s: ", c->cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: deltatune %s %s\n(deltatune %s --help lists every option)\n", c->cmd, c->synopsis, c->cmd);
    return 2;
}

static bool is_choice(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return true;
        p += len + (bar != NULL);
    }
    return false;
}

// Stores the value v of option o; returns -1, or 2 after a message.
static int set_value(const dt_cli *c, const dt_opt *o, const char *v) {
    char *end;
    errno = 0;
    bool ranged = o->lo != 0 || o->hi != 0;
    switch (o->kind) {
    case DT_OPT_FLAG: *(bool *)o->dest = true; return -1;
    case DT_OPT_STR:
        if (!*v) return dt_cli_bad(c, "%s: expected %s, got an empty value", o->name, o->arg);
        *(const char **)o->dest = v;
        return -1;
    case DT_OPT_CHOICE:
        if (!is_choice(o->arg, v)) return dt_cli_bad(c, "%s '%s': expected one of %s", o->name, v, o->arg);
        *(const char **)o->dest = v;
        return -1;
    case DT_OPT_LIST:
        if (!*v) return dt_cli_bad(c, "%s: expected %s, got an empty value", o->name, o->arg);
        if (*o->count >= o->max) return dt_cli_bad(c, "%s: at most %d may be given", o->name, o->max);
        ((const char **)o->dest)[(*o->count)++] = v;
        return -1;
    case DT_OPT_INT: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno || (ranged && (x < o->lo || x > o->hi))) {
            if (ranged) return dt_cli_bad(c, "%s '%s': expected a whole number from %.0f to %.0f", o->name, v, o->lo, o->hi);
            return dt_cli_bad(c, "%s '%s': expected a whole number", o->name, v);
        }
        *(int64_t *)o->dest = x;
        return -1;
    }
    case DT_OPT_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x) || (ranged && (x < o->lo || x > o->hi))) {
            if (ranged) return dt_cli_bad(c, "%s '%s': expected a number from %g to %g", o->name, v, o->lo, o->hi);
            return dt_cli_bad(c, "%s '%s': expected a number", o->name, v);
        }
        *(double *)o->dest = x;
        return -1;
    }
    }
    return -1;
}

int dt_cli_parse(const dt_cli *c, int argc, char **argv, char **pos, int *n_pos, int max_pos) {
    if (n_pos) *n_pos = 0;
    bool only_pos = false; // after "--" everything is positional
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            dt_cli_usage(c, stdout);
            return 0;
        }
        if (!only_pos && !strcmp(a, "--")) { only_pos = true; continue; }
        if (only_pos || a[0] != '-' || !a[1]) {
            if (!c->positional || !pos || *n_pos >= max_pos) return dt_cli_bad(c, "unexpected argument '%s'", a);
            pos[(*n_pos)++] = argv[i];
            continue;
        }
        // --name=value is the same as --name value.
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const dt_opt *o = NULL;
        for (int k = 0; k < c->n_opts && !o; k++) {
            const dt_opt *x = &c->opts[k];
            if ((strlen(x->name) == len && !strncmp(x->name, a, len)) ||
                (x->alias && strlen(x->alias) == len && !strncmp(x->alias, a, len)))
                o = x;
        }
        if (!o) {
            const char *names[64];
            int n = 0;
            for (int k = 0; k < c->n_opts && n < 62; k++) {
                names[n++] = c->opts[k].name;
                if (c->opts[k].alias) names[n++] = c->opts[k].alias;
            }
            char word[96];
            snprintf(word, sizeof word, "%.*s", (int)(len < 95 ? len : 95), a);
            const char *near = dt_rsuggest(word, names, n);
            if (near) return dt_cli_bad(c, "unknown option '%s' (did you mean %s?)", word, near);
            return dt_cli_bad(c, "unknown option '%s'", word);
        }
        if (o->kind == DT_OPT_FLAG) {
            if (eq) return dt_cli_bad(c, "%s takes no value", o->name);
            *(bool *)o->dest = true;
            continue;
        }
        const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!v) return dt_cli_bad(c, "%s: expected a value (%s)", o->name, o->arg);
        int rc = set_value(c, o, v);
        if (rc >= 0) return rc;
    }
    return -1;
}

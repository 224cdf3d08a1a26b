// Walks the YAML tree against the key table: unknown keys, wrong types and out-of-range values fail
// here with the place, the key path and what was expected; good values are stored into dt_recipe.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "recipes/recipe_internal.h"

#define PATH_MAX_LEN 256

static int oom(dt_ctx *ctx) { return dt_fail(ctx, DT_ENOMEM, "out of memory while reading a recipe"); }

static int expected(dt_rload *L, const char *path, const dt_ynode *v, const char *what) {
    char got[128];
    dt_rdescribe(v, got, sizeof got);
    const char *hint = v->kind == DT_YSCALAR && !v->plain && (strstr(what, "number") || strstr(what, "integer") ||
                                                               strstr(what, "true or false"))
                       ? " (write numbers and booleans without quotes)" : "";
    return dt_yfail(L->ctx, v, "%s: expected %s, got %s%s", path, what, got, hint);
}

static bool in_range(const dt_rkey *k, double x) {
    bool lo_ok = k->flags & DT_RF_LO_OPEN ? x > k->lo : x >= k->lo;
    bool hi_ok = k->flags & DT_RF_HI_OPEN ? x < k->hi : x <= k->hi;
    return lo_ok && hi_ok;
}

static int want_float(dt_rload *L, const dt_rkey *k, const char *path, const dt_ynode *v, double *out) {
    char what[96], range[64];
    dt_rrange(k, range, sizeof range);
    snprintf(what, sizeof what, "a number %s", range);
    if (v->kind != DT_YSCALAR || !v->plain || !dt_rscalar_float(v->text, out) || !in_range(k, *out))
        return expected(L, path, v, what);
    return DT_OK;
}

static int want_int(dt_rload *L, const dt_rkey *k, const char *path, const dt_ynode *v, int64_t *out) {
    char what[96], range[64];
    dt_rrange(k, range, sizeof range);
    snprintf(what, sizeof what, "an integer %s", range);
    if (v->kind != DT_YSCALAR || !v->plain || !dt_rscalar_int(v->text, out) || !in_range(k, (double)*out))
        return expected(L, path, v, what);
    return DT_OK;
}

// Any non-null scalar is a string: `init_text: 42` is the text "42".
static int want_string(dt_rload *L, const char *path, const dt_ynode *v, const char *what) {
    if (v->kind != DT_YSCALAR || dt_ynode_is_null(v)) return expected(L, path, v, what);
    if (!v->text[0]) return dt_yfail(L->ctx, v, "%s: expected %s, got an empty string", path, what);
    return DT_OK;
}

// Paths in the file are relative to the recipe's folder; paths in overrides to the current folder.
static int want_path(dt_rload *L, const char *path, const dt_ynode *v, char **out) {
    int rc = want_string(L, path, v, "a path");
    if (rc) return rc;
    *out = dt_rpath_resolve(v->from_override ? L->cwd : L->recipe_dir, v->text);
    return *out ? DT_OK : oom(L->ctx);
}

static void strlist_free(dt_strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int strlist_reserve(dt_rload *L, dt_strlist *l, size_t n) {
    strlist_free(l);
    if (!n) return DT_OK;
    l->items = calloc(n, sizeof *l->items);
    return l->items ? DT_OK : oom(L->ctx);
}

static int store_paths(dt_rload *L, const dt_rkey *k, const dt_ynode *v, dt_strlist *out) {
    const char *what = "a path or a list of paths";
    if (dt_ynode_is_null(v)) {
        strlist_free(out);
        return k->flags & DT_RF_NULLABLE ? DT_OK : expected(L, k->path, v, what);
    }
    if (v->kind == DT_YSCALAR) {
        int rc = strlist_reserve(L, out, 1);
        if (!rc) rc = want_path(L, k->path, v, &out->items[0]);
        if (!rc) out->n = 1;
        return rc;
    }
    if (v->kind != DT_YSEQ) return expected(L, k->path, v, what);
    if (!v->n && !(k->flags & DT_RF_NULLABLE)) return expected(L, k->path, v, "at least one path");
    int rc = strlist_reserve(L, out, v->n);
    for (size_t i = 0; !rc && i < v->n; i++) {
        char item[PATH_MAX_LEN];
        snprintf(item, sizeof item, "%s[%zu]", k->path, i);
        rc = want_path(L, item, v->items[i], &out->items[i]);
        if (!rc) out->n++;
    }
    return rc;
}

static bool module_name_ok(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (!(*s == '_' || *s == '.' || (*s >= '0' && *s <= '9') || ((*s | 32) >= 'a' && (*s | 32) <= 'z')))
            return false;
    return true;
}

// method.target_modules (a non-empty list, or all-linear) or another list of modules (may be empty).
static int store_modules(dt_rload *L, const dt_rkey *k, const dt_ynode *v) {
    dt_recipe *r = L->r;
    dt_strlist *list = (dt_strlist *)((char *)r + k->off);
    const bool targets = list == &r->method.target_modules;
    const char *what = targets ? "a list of module names such as [q_proj, v_proj], or all-linear"
                               : "a list of module names such as [down_proj], possibly empty";
    strlist_free(list);
    if (targets) r->method.target_all_linear = false;
    if (targets && v->kind == DT_YSCALAR && !strcmp(v->text, "all-linear")) {
        r->method.target_all_linear = true;
        return DT_OK;
    }
    if (v->kind != DT_YSEQ || (targets && !v->n)) return expected(L, k->path, v, what);
    int rc = v->n ? strlist_reserve(L, list, v->n) : DT_OK;
    for (size_t i = 0; !rc && i < v->n; i++) {
        const dt_ynode *it = v->items[i];
        char item[PATH_MAX_LEN];
        snprintf(item, sizeof item, "%s[%zu]", k->path, i);
        if (it->kind != DT_YSCALAR || !module_name_ok(it->text))
            return expected(L, item, it, "a module name (letters, digits, '_' and '.'), e.g. q_proj");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(v->items[j]->text, it->text))
                return dt_yfail(L->ctx, it, "%s: '%s' is listed twice", item, it->text);
        if (!(list->items[i] = strdup(it->text))) return oom(L->ctx);
        list->n++;
    }
    return rc;
}

static int store_intlist(dt_rload *L, const dt_rkey *k, const dt_ynode *v, dt_intlist *out) {
    free(out->items);
    out->items = NULL;
    out->n = 0;
    if (dt_ynode_is_null(v)) return DT_OK;
    if (v->kind != DT_YSEQ) return expected(L, k->path, v, "a list of layer indices, or null for every layer");
    if (!v->n) return expected(L, k->path, v, "at least one layer index (null means every layer)");
    if (!(out->items = calloc(v->n, sizeof *out->items))) return oom(L->ctx);
    for (size_t i = 0; i < v->n; i++) {
        char item[PATH_MAX_LEN];
        int64_t x;
        snprintf(item, sizeof item, "%s[%zu]", k->path, i);
        int rc = want_int(L, k, item, v->items[i], &x);
        if (rc) return rc;
        for (int j = 0; j < out->n; j++)
            if (out->items[j] == (int)x) return dt_yfail(L->ctx, v->items[i], "%s: layer %d is listed twice", item, (int)x);
        out->items[out->n++] = (int)x;
    }
    return DT_OK;
}

static int store_enum(dt_rload *L, const dt_rkey *k, const dt_ynode *v, int *out) {
    const char *names[16];
    char what[256];
    int n = 0;
    size_t w = (size_t)snprintf(what, sizeof what, "one of");
    for (const dt_renum *e = k->names; e->name; e++) {
        if (v->kind == DT_YSCALAR && !strcmp(v->text, e->name)) {
            *out = e->value;
            return DT_OK;
        }
        names[n++] = e->name;
        w += (size_t)snprintf(what + w, sizeof what - w, "%s %s", n > 1 ? "," : "", e->name);
    }
    const char *guess = v->kind == DT_YSCALAR && !dt_ynode_is_null(v) ? dt_rsuggest(v->text, names, n) : NULL;
    if (!guess) return expected(L, k->path, v, what);
    char got[128];
    dt_rdescribe(v, got, sizeof got);
    return dt_yfail(L->ctx, v, "%s: expected %s, got %s; did you mean `%s`?", k->path, what, got, guess);
}

static int store_resume(dt_rload *L, const dt_rkey *k, const dt_ynode *v) {
    dt_recipe *r = L->r;
    bool b;
    free(r->resume_path);
    r->resume_path = NULL;
    r->resume = DT_RESUME_NO;
    if (dt_ynode_is_null(v)) return DT_OK;
    if (v->kind == DT_YSCALAR && v->plain && dt_rscalar_bool(v->text, &b)) {
        r->resume = b ? DT_RESUME_LATEST : DT_RESUME_NO;
        return DT_OK;
    }
    if (v->kind != DT_YSCALAR) return expected(L, k->path, v, "false, true or a checkpoint path");
    r->resume = DT_RESUME_PATH;
    return want_path(L, k->path, v, &r->resume_path);
}

int dt_rconvert_value(dt_rload *L, int key, const dt_ynode *v) {
    const dt_rkey *k = &dt_recipe_keys[key];
    void *field = (char *)L->r + k->off;
    bool is_null = dt_ynode_is_null(v), b;
    double d;
    int64_t i;
    int rc;
    if (is_null && (k->flags & DT_RF_NULLABLE)) {
        switch (k->kind) {
        case DT_RK_INT: *(int *)field = (int)k->nullv; return DT_OK;
        case DT_RK_I64: *(int64_t *)field = (int64_t)k->nullv; return DT_OK;
        case DT_RK_FLOAT: *(double *)field = k->nullv; return DT_OK;
        case DT_RK_STRING: case DT_RK_PATH: free(*(char **)field); *(char **)field = NULL; return DT_OK;
        default: break;   // lists handle null themselves
        }
    }
    switch (k->kind) {
    case DT_RK_SECTION:
        return dt_fail(L->ctx, DT_EINTERNAL, "%s: a section has no value to store", k->path);
    case DT_RK_STRING:
        if ((rc = want_string(L, k->path, v, "a string"))) return rc;
        free(*(char **)field);
        return (*(char **)field = strdup(v->text)) ? DT_OK : oom(L->ctx);
    case DT_RK_PATH:
        free(*(char **)field);
        *(char **)field = NULL;
        return want_path(L, k->path, v, (char **)field);
    case DT_RK_PATHS: return store_paths(L, k, v, field);
    case DT_RK_INT:
        if ((rc = want_int(L, k, k->path, v, &i))) return rc;
        *(int *)field = (int)i;
        return DT_OK;
    case DT_RK_I64: return want_int(L, k, k->path, v, (int64_t *)field);
    case DT_RK_FLOAT: return want_float(L, k, k->path, v, (double *)field);
    case DT_RK_FLOAT2:
        if (v->kind != DT_YSEQ || v->n != 2) {
            char what[96], range[64];
            dt_rrange(k, range, sizeof range);
            snprintf(what, sizeof what, "a list of two numbers %s", range);
            return expected(L, k->path, v, what);
        }
        for (size_t j = 0; j < 2; j++) {
            char item[PATH_MAX_LEN];
            snprintf(item, sizeof item, "%s[%zu]", k->path, j);
            if ((rc = want_float(L, k, item, v->items[j], &d))) return rc;
            ((double *)field)[j] = d;
        }
        return DT_OK;
    case DT_RK_BOOL:
        if (v->kind != DT_YSCALAR || !v->plain || !dt_rscalar_bool(v->text, &b))
            return expected(L, k->path, v, "true or false");
        *(bool *)field = b;
        return DT_OK;
    case DT_RK_ENUM: return store_enum(L, k, v, (int *)field);
    case DT_RK_MODULES: return store_modules(L, k, v);
    case DT_RK_INTLIST: return store_intlist(L, k, v, field);
    case DT_RK_RESUME: return store_resume(L, k, v);
    }
    return dt_fail(L->ctx, DT_EINTERNAL, "%s: unknown key kind %d", k->path, (int)k->kind);
}

// Unknown key: suggest the closest key of the same section, or the same name in another section
// (`lr` under train is `train.optimizer.lr`), or else list what the section holds.
static int unknown_key(dt_rload *L, const dt_ynode *key, const char *section, const char *full) {
    const char *siblings[DT_RECIPE_NKEYS];
    int n = 0;
    for (int i = 0; i < DT_RECIPE_NKEYS; i++)
        if (dt_rkey_in_section(dt_recipe_keys[i].path, section)) siblings[n++] = dt_rkey_leaf(dt_recipe_keys[i].path);
    const char *guess = dt_rsuggest(key->text, siblings, n);
    if (guess) return dt_yfail(L->ctx, key, "unknown key '%s'; did you mean `%s`?", full, guess);
    for (int i = 0; i < DT_RECIPE_NKEYS; i++)
        if (!strcasecmp(dt_rkey_leaf(dt_recipe_keys[i].path), key->text))
            return dt_yfail(L->ctx, key, "unknown key '%s'; did you mean `%s`?", full, dt_recipe_keys[i].path);
    char list[1024];
    size_t w = 0;
    list[0] = 0;
    for (int i = 0; i < n && w < sizeof list; i++)
        w += (size_t)snprintf(list + w, sizeof list - w, "%s%s", i ? ", " : "", siblings[i]);
    return dt_yfail(L->ctx, key, "unknown key '%s'; valid keys %s%s%s: %s", full, section[0] ? "in '" : "here",
                    section, section[0] ? "'" : "", list);
}

static int convert_map(dt_rload *L, const dt_ynode *map, const char *section) {
    for (size_t i = 0; i < map->n; i++) {
        const dt_ynode *key = map->keys[i], *v = map->items[i];
        char full[PATH_MAX_LEN];
        snprintf(full, sizeof full, "%s%s%s", section, section[0] ? "." : "", key->text);
        // A dotted key would otherwise match the table ("optimizer.lr" under train).
        int idx = strchr(key->text, '.') ? -1 : dt_rkey_find(full);
        if (idx < 0) return unknown_key(L, key, section, full);
        int rc;
        if (dt_recipe_keys[idx].kind == DT_RK_SECTION) {
            if (v->kind == DT_YMAP) rc = convert_map(L, v, full);
            else rc = dt_ynode_is_null(v) ? DT_OK : expected(L, full, v, "a section (a mapping of keys)");
        } else {
            L->key_at[idx] = key;
            L->val_at[idx] = v;
            rc = dt_rconvert_value(L, idx, v);
        }
        if (rc) return rc;
    }
    return DT_OK;
}

int dt_rconvert_tree(dt_rload *L) {
    if (L->root->kind != DT_YMAP)
        return expected(L, "the recipe", L->root, "a mapping of sections (model:, method:, data:, train:, ...)");
    return convert_map(L, L->root, "");
}

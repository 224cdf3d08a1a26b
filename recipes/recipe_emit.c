// Prints a loaded recipe as YAML through libyaml's emitter (which does the quoting and escaping),
// walking the key table so that every key appears, in the README's order.
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>
#include "models/atomic_file.h"
#include "recipes/recipe_internal.h"

typedef struct {
    yaml_emitter_t em;
    dt_ctx *ctx;
    int rc;
} emitter;

static void emit(emitter *e, yaml_event_t *ev, int init_ok) {
    if (e->rc) return;
    if (!init_ok) { e->rc = dt_fail(e->ctx, DT_ENOMEM, "out of memory while writing a recipe"); return; }
    if (!yaml_emitter_emit(&e->em, ev)) {
        bool io = e->em.error == YAML_WRITER_ERROR;
        e->rc = dt_fail(e->ctx, io ? DT_EIO : DT_EINTERNAL, "writing the recipe: %s",
                        e->em.problem ? e->em.problem : "libyaml emitter error");
    }
}

static void scalar_style(emitter *e, const char *text, yaml_scalar_style_t style) {
    yaml_event_t ev;
    emit(e, &ev, yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1, 1, style));
}

// Numbers, booleans and null: plain.
static void word(emitter *e, const char *text) { scalar_style(e, text, YAML_PLAIN_SCALAR_STYLE); }

// Text that would read back as something else (null, a boolean, a number, nothing) is double-quoted;
// anything else is left to libyaml, which writes it plain when it can.
static void string(emitter *e, const char *text) {
    bool b;
    int64_t i;
    double d;
    dt_ynode probe = {.kind = DT_YSCALAR, .text = (char *)text, .plain = true};
    bool ambiguous = dt_ynode_is_null(&probe) || dt_rscalar_bool(text, &b) || dt_rscalar_int(text, &i) ||
                     dt_rscalar_float(text, &d);
    scalar_style(e, text, ambiguous ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
}

// The shortest text that reads back as the same double, with a '.' so that YAML 1.1 readers (PyYAML)
// also see a float: 2e-05 -> 2.0e-05, 16 -> 16.0.
static void number(emitter *e, double x) {
    char buf[48], out[56];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    char *exp = strchr(buf, 'e');
    if (strchr(buf, '.')) snprintf(out, sizeof out, "%s", buf);
    else if (exp) snprintf(out, sizeof out, "%.*s.0%s", (int)(exp - buf), buf, exp);
    else snprintf(out, sizeof out, "%s.0", buf);
    word(e, out);
}

static void integer(emitter *e, int64_t x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, x);
    word(e, buf);
}

static void seq_start(emitter *e, bool flow) {
    yaml_event_t ev;
    emit(e, &ev, yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                      flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE));
}

static void seq_end(emitter *e) {
    yaml_event_t ev;
    emit(e, &ev, yaml_sequence_end_event_initialize(&ev));
}

// Keys of the other method or optimizer are left out: they would not load back.
static bool applies(const dt_recipe *r, const dt_rkey *k) {
    bool adamw = r->train.optimizer.name == DT_OPTIM_ADAMW;
    return dt_rkey_for_method(k, r->method.name) &&
           !((k->flags & DT_RF_ADAMW) && !adamw) && !((k->flags & DT_RF_SGD) && adamw);
}

static void value(emitter *e, const dt_recipe *r, const dt_rkey *k) {
    const void *field = (const char *)r + k->off;
    bool nullable = k->flags & DT_RF_NULLABLE;
    switch (k->kind) {
    case DT_RK_SECTION: break;
    case DT_RK_STRING:
    case DT_RK_PATH: {
        const char *s = *(char *const *)field;
        if (s) string(e, s); else word(e, "null");
        break;
    }
    case DT_RK_PATHS: {
        const dt_strlist *l = field;
        if (!l->n) { word(e, "null"); break; }
        seq_start(e, false);
        for (int i = 0; i < l->n; i++) string(e, l->items[i]);
        seq_end(e);
        break;
    }
    case DT_RK_INT: {
        int x = *(const int *)field;
        if (nullable && x == (int)k->nullv) word(e, "null"); else integer(e, x);
        break;
    }
    case DT_RK_I64: {
        int64_t x = *(const int64_t *)field;
        if (nullable && x == (int64_t)k->nullv) word(e, "null"); else integer(e, x);
        break;
    }
    case DT_RK_FLOAT: {
        double x = *(const double *)field;
        if (nullable && x == k->nullv) word(e, "null"); else number(e, x);
        break;
    }
    case DT_RK_FLOAT2:
        seq_start(e, true);
        number(e, ((const double *)field)[0]);
        number(e, ((const double *)field)[1]);
        seq_end(e);
        break;
    case DT_RK_BOOL: word(e, *(const bool *)field ? "true" : "false"); break;
    case DT_RK_ENUM: word(e, dt_renum_name(k->names, *(const int *)field)); break;
    case DT_RK_MODULES: {
        const dt_strlist *l = field;
        if (l == &r->method.target_modules && r->method.target_all_linear) { word(e, "all-linear"); break; }
        seq_start(e, true);
        for (int i = 0; i < l->n; i++) string(e, l->items[i]);
        seq_end(e);
        break;
    }
    case DT_RK_INTLIST: {
        const dt_intlist *l = field;
        if (!l->n) { word(e, "null"); break; }
        seq_start(e, true);
        for (int i = 0; i < l->n; i++) integer(e, l->items[i]);
        seq_end(e);
        break;
    }
    case DT_RK_RESUME:
        if (r->resume == DT_RESUME_PATH) string(e, r->resume_path);
        else word(e, r->resume == DT_RESUME_LATEST ? "true" : "false");
        break;
    }
}

static void section(emitter *e, const dt_recipe *r, const char *prefix) {
    yaml_event_t ev;
    emit(e, &ev, yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
    for (int i = 0; i < DT_RECIPE_NKEYS; i++) {
        const dt_rkey *k = &dt_recipe_keys[i];
        if (!dt_rkey_in_section(k->path, prefix) || !applies(r, k)) continue;
        word(e, dt_rkey_leaf(k->path));
        if (k->kind == DT_RK_SECTION) section(e, r, k->path);
        else value(e, r, k);
    }
    emit(e, &ev, yaml_mapping_end_event_initialize(&ev));
}

int dt_recipe_emit(dt_ctx *ctx, const dt_recipe *r, FILE *f) {
    emitter e = {.ctx = ctx};
    if (!yaml_emitter_initialize(&e.em)) return dt_fail(ctx, DT_ENOMEM, "out of memory while writing a recipe");
    yaml_emitter_set_output_file(&e.em, f);
    yaml_emitter_set_unicode(&e.em, 1);
    yaml_emitter_set_width(&e.em, -1);   // never fold long paths
    yaml_emitter_set_indent(&e.em, 2);
    fputs("# deltatune recipe, fully resolved: every key with its value or default, paths absolute.\n", f);
    yaml_event_t ev;
    emit(&e, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    emit(&e, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
    section(&e, r, "");
    emit(&e, &ev, yaml_document_end_event_initialize(&ev, 1));
    emit(&e, &ev, yaml_stream_end_event_initialize(&ev));
    if (!e.rc && !yaml_emitter_flush(&e.em)) e.rc = dt_fail(ctx, DT_EIO, "writing the recipe: %s", strerror(errno));
    yaml_emitter_delete(&e.em);
    if (!e.rc && ferror(f)) e.rc = dt_fail(ctx, DT_EIO, "writing the recipe: %s", strerror(errno));
    return e.rc;
}

int dt_recipe_emit_string(dt_ctx *ctx, const dt_recipe *r, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = open_memstream(out, len);
    if (!f) return dt_fail(ctx, DT_ENOMEM, "out of memory while writing a recipe");
    int rc = dt_recipe_emit(ctx, r, f);
    if (fclose(f) && !rc) rc = dt_fail(ctx, DT_ENOMEM, "out of memory while writing a recipe");
    if (rc) {
        free(*out);
        *out = NULL;
        *len = 0;
    }
    return rc;
}

int dt_recipe_write(dt_ctx *ctx, const dt_recipe *r, const char *path) {
    char *text;
    size_t n;
    int rc = dt_recipe_emit_string(ctx, r, &text, &n);
    if (rc) return rc;
    rc = dt_atomic_write(ctx, path, text, n);
    free(text);
    return rc;
}

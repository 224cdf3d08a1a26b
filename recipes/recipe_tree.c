// Builds a dt_ynode tree from libyaml's loaded document, checking what a recipe may not contain.
#include "recipes/recipe_tree.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

// Aliases share nodes in libyaml's document, so a hostile file ("billion laughs", or an anchor that
// contains itself) could expand without end; these bound the copy. A real recipe has ~100 nodes.
#define MAX_DEPTH 32
#define MAX_NODES 100000

int dt_yfail(dt_ctx *ctx, const dt_ynode *at, const char *fmt, ...) {
    char where[1024], what[3072];
    if (at->from_override)
        snprintf(where, sizeof where, "command line override '%s'", at->origin);
    else
        snprintf(where, sizeof where, "%s:%d:%d", at->origin, at->line, at->col);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return dt_fail(ctx, DT_EINPUT, "%s: %s", where, what);
}

bool dt_ynode_is_null(const dt_ynode *n) {
    if (n->kind != DT_YSCALAR || !n->plain) return false;
    const char *t = n->text;
    return !t[0] || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

dt_ynode *dt_ynode_new(dt_ykind kind, const char *origin, bool from_override) {
    dt_ynode *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->origin = origin;
    n->from_override = from_override;
    return n;
}

void dt_ynode_free(dt_ynode *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys) dt_ynode_free(n->keys[i]);
        dt_ynode_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->text);
    free(n);
}

static int grow(dt_ynode *n, bool with_keys) {
    if (n->n < n->cap) return 0;
    size_t cap = n->cap ? n->cap * 2 : 4;
    dt_ynode **items = realloc(n->items, cap * sizeof *items);
    if (!items) return -1;
    n->items = items;
    if (with_keys) {
        dt_ynode **keys = realloc(n->keys, cap * sizeof *keys);
        if (!keys) return -1;
        n->keys = keys;
    }
    n->cap = cap;
    return 0;
}

int dt_ynode_map_add(dt_ynode *map, dt_ynode *key, dt_ynode *value) {
    if (grow(map, true)) return -1;
    map->keys[map->n] = key;
    map->items[map->n] = value;
    map->n++;
    return 0;
}

static int seq_add(dt_ynode *seq, dt_ynode *item) {
    if (grow(seq, false)) return -1;
    seq->items[seq->n++] = item;
    return 0;
}

typedef struct {
    dt_ctx *ctx;
    yaml_document_t *doc;
    const char *origin;
    bool from_override;
    size_t count;
} builder;

static int oom(dt_ctx *ctx) { return dt_fail(ctx, DT_ENOMEM, "out of memory while reading a recipe"); }

// A node's tag is either the default one for its kind (no tag written) or one the user wrote.
static bool has_user_tag(const yaml_node_t *yn) {
    const char *tag = (const char *)yn->tag;
    const char *def = yn->type == YAML_SCALAR_NODE ? YAML_DEFAULT_SCALAR_TAG
                    : yn->type == YAML_SEQUENCE_NODE ? YAML_DEFAULT_SEQUENCE_TAG : YAML_DEFAULT_MAPPING_TAG;
    return tag && strcmp(tag, def) != 0;
}

static int build(builder *b, int id, int depth, dt_ynode **out) {
    yaml_node_t *yn = yaml_document_get_node(b->doc, id);
    *out = NULL;
    if (!yn) return dt_fail(b->ctx, DT_EINTERNAL, "%s: libyaml returned no node %d", b->origin, id);
    dt_ynode *n = dt_ynode_new(yn->type == YAML_SCALAR_NODE ? DT_YSCALAR
                               : yn->type == YAML_SEQUENCE_NODE ? DT_YSEQ : DT_YMAP,
                               b->origin, b->from_override);
    if (!n) return oom(b->ctx);
    n->line = (int)yn->start_mark.line + 1;
    n->col = (int)yn->start_mark.column + 1;
    *out = n;
    if (depth > MAX_DEPTH)
        return dt_yfail(b->ctx, n, "nested deeper than %d levels (a recursive alias?)", MAX_DEPTH);
    if (++b->count > MAX_NODES)
        return dt_yfail(b->ctx, n, "more than %d values after expanding aliases", MAX_NODES);
    if (has_user_tag(yn))
        return dt_yfail(b->ctx, n, "YAML tags such as '%s' are not supported in a recipe", (const char *)yn->tag);

    if (yn->type == YAML_SCALAR_NODE) {
        size_t len = yn->data.scalar.length;
        if (memchr(yn->data.scalar.value, 0, len))
            return dt_yfail(b->ctx, n, "a value contains a NUL character");
        n->text = strndup((const char *)yn->data.scalar.value, len);
        if (!n->text) return oom(b->ctx);
        n->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        return DT_OK;
    }
    if (yn->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = yn->data.sequence.items.start; it < yn->data.sequence.items.top; it++) {
            dt_ynode *child;
            int rc = build(b, *it, depth + 1, &child);
            if (child && seq_add(n, child)) { dt_ynode_free(child); return oom(b->ctx); }
            if (rc) return rc;
        }
        return DT_OK;
    }
    for (yaml_node_pair_t *p = yn->data.mapping.pairs.start; p < yn->data.mapping.pairs.top; p++) {
        dt_ynode *key, *val = NULL;
        int rc = build(b, p->key, depth + 1, &key);
        if (!rc && key->kind != DT_YSCALAR)
            rc = dt_yfail(b->ctx, key, "a key must be a plain name, not a %s",
                          key->kind == DT_YSEQ ? "list" : "mapping");
        // libyaml does not implement YAML 1.1's merge key, so '<<: *anchor' would reach the schema as an
        // unknown key named '<<'; say what it is instead.
        if (!rc && key->plain && !strcmp(key->text, "<<"))
            rc = dt_yfail(b->ctx, key, "YAML merge keys ('<<: *anchor') are not supported in a recipe; an alias "
                          "can stand for a whole value or section ('optimizer: *anchor'), or write the keys out");
        for (size_t i = 0; !rc && i < n->n; i++)
            if (!strcmp(n->keys[i]->text, key->text))
                rc = dt_yfail(b->ctx, key, "duplicate key '%s' (first given at line %d)", key->text,
                              n->keys[i]->line);
        if (!rc) rc = build(b, p->value, depth + 1, &val);
        if (key && dt_ynode_map_add(n, key, val)) {
            dt_ynode_free(key);
            dt_ynode_free(val);
            return oom(b->ctx);
        }
        if (!rc && !val) rc = oom(b->ctx);
        if (rc) return rc;
    }
    return DT_OK;
}

// Line and column (1-based, the column in characters) of byte `offset` of a file, and that byte, by
// reading the file again.
static bool file_mark(const char *path, size_t offset, size_t *line, size_t *col, int *byte) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    *line = *col = 1;
    for (size_t i = 0; i < offset; i++) {
        int c = getc(f);
        if (c == EOF) break;
        if (c == '\n') { ++*line; *col = 1; }
        else if ((c & 0xC0) != 0x80) ++*col; // a UTF-8 continuation byte is not a new character
    }
    *byte = getc(f);
    fclose(f);
    return true;
}

static int syntax_error(dt_ctx *ctx, const yaml_parser_t *p, const char *origin, bool from_override) {
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->error == YAML_MEMORY_ERROR) return oom(ctx);
    if (from_override)
        return dt_fail(ctx, DT_EINPUT, "command line override '%s': YAML syntax error: %s", origin, problem);
    // libyaml's reader (bad UTF-8, control characters) gives the byte offset of the problem, not a mark:
    // problem_mark stays 0:0, which would blame line 1 of any file. (problem_value is not always the
    // byte: it is -1 for a sequence cut short, so the byte is read from the file.)
    size_t line, col;
    int byte;
    if (p->error == YAML_READER_ERROR && file_mark(origin, p->problem_offset, &line, &col, &byte) && byte != EOF)
        return dt_fail(ctx, DT_EINPUT, "%s:%zu:%zu: %s (byte 0x%02X at offset %zu)%s", origin, line, col, problem,
                       (unsigned)byte, p->problem_offset,
                       strstr(problem, "UTF") ? ": a recipe must be UTF-8 text" : "");
    // libyaml marks are 0-based; the problem mark is where the parser noticed the error.
    return dt_fail(ctx, DT_EINPUT, "%s:%zu:%zu: YAML syntax error: %s%s%s", origin,
                   p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                   p->context ? " " : "", p->context ? p->context : "");
}

// Loads the single document of an initialised parser into a tree; NULL root when the input is empty.
static int load(dt_ctx *ctx, yaml_parser_t *parser, const char *origin, bool from_override, dt_ynode **root) {
    yaml_document_t doc;
    *root = NULL;
    if (!yaml_parser_load(parser, &doc)) return syntax_error(ctx, parser, origin, from_override);
    yaml_node_t *top = yaml_document_get_root_node(&doc);
    if (!top) {
        yaml_document_delete(&doc);
        return DT_OK;
    }
    builder b = {ctx, &doc, origin, from_override, 0};
    int rc = build(&b, 1, 0, root);
    yaml_document_delete(&doc);
    if (rc) return rc;

    yaml_document_t next;
    if (!yaml_parser_load(parser, &next)) return syntax_error(ctx, parser, origin, from_override);
    bool more = yaml_document_get_root_node(&next) != NULL;
    int line = (int)next.start_mark.line + 1;
    yaml_document_delete(&next);
    if (more) {
        dt_ynode at = {.origin = origin, .from_override = from_override, .line = line, .col = 1};
        return dt_yfail(ctx, &at, "a recipe is one YAML document, but a second one starts here");
    }
    return DT_OK;
}

int dt_ytree_load_file(dt_ctx *ctx, const char *path, dt_ynode **root) {
    *root = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(ctx, DT_EINPUT, "%s: cannot open the recipe: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return dt_fail(ctx, DT_EINPUT, "%s: is a folder; expected a recipe .yaml file", path);
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return oom(ctx);
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = load(ctx, &parser, path, false, root);
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc) {
        dt_ynode_free(*root);
        *root = NULL;
        return rc;
    }
    if (!*root) {
        *root = dt_ynode_new(DT_YMAP, path, false);
        if (!*root) return oom(ctx);
        (*root)->line = (*root)->col = 1;
    }
    return DT_OK;
}

int dt_ytree_parse_value(dt_ctx *ctx, const char *text, const char *origin, dt_ynode **out) {
    *out = NULL;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return oom(ctx);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    int rc = load(ctx, &parser, origin, true, out);
    yaml_parser_delete(&parser);
    if (rc) {
        dt_ynode_free(*out);
        *out = NULL;
        return rc;
    }
    if (!*out) {
        // "key=" (nothing after '=') means null, like "key:" with nothing after it in the file.
        *out = dt_ynode_new(DT_YSCALAR, origin, true);
        if (!*out || !((*out)->text = strdup(""))) return oom(ctx);
        (*out)->plain = true;
    }
    return DT_OK;
}

// Internal: a small YAML tree with source positions, built from libyaml's document loader. Every node
// remembers where it came from (recipe file and line:column, or a command-line override) so that any
// later error can name the place.
#ifndef DT_RECIPE_TREE_H
#define DT_RECIPE_TREE_H
#include <stdbool.h>
#include <stddef.h>
#include "autograd/context.h"

typedef enum { DT_YSCALAR, DT_YSEQ, DT_YMAP } dt_ykind;

typedef struct dt_ynode dt_ynode;
struct dt_ynode {
    dt_ykind kind;
    char *text;          // DT_YSCALAR: the scalar's text
    bool plain;          // DT_YSCALAR written without quotes: may be a null, a bool or a number
    bool from_override;  // origin is an override's text rather than the recipe file
    const char *origin;  // recipe file as the user named it, or the override "key=value" (not owned)
    int line, col;       // 1-based position in the recipe file (unused for overrides)
    size_t n;            // items (DT_YSEQ) or key/value pairs (DT_YMAP)
    size_t cap;          // allocated slots in items (and keys)
    dt_ynode **keys;     // DT_YMAP: the key scalars
    dt_ynode **items;    // DT_YSEQ: items; DT_YMAP: the values
};

// Reads one YAML document. An empty file gives an empty mapping. Duplicate keys, non-scalar keys,
// tags and a second document are errors.
int dt_ytree_load_file(dt_ctx *ctx, const char *path, dt_ynode **root);
// Parses an override's value ("3e-4", "[a.jsonl, b.jsonl]", "" = null); nodes get `origin`.
int dt_ytree_parse_value(dt_ctx *ctx, const char *text, const char *origin, dt_ynode **out);
dt_ynode *dt_ynode_new(dt_ykind kind, const char *origin, bool from_override);
// Appends key/value to a mapping (takes ownership of both).
int dt_ynode_map_add(dt_ynode *map, dt_ynode *key, dt_ynode *value);
void dt_ynode_free(dt_ynode *n);

// A plain null: ~, null, Null, NULL or nothing at all.
bool dt_ynode_is_null(const dt_ynode *n);

// Fills ctx->msg with "<where>: <message>" (where = file:line:col or "command line override '...'").
int dt_yfail(dt_ctx *ctx, const dt_ynode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

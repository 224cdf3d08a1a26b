// Command-line overrides: "train.optimizer.lr=3e-4" sets one key in the tree before it is checked, so
// an override is validated exactly like the same key written in the file.
#include <stdlib.h>
#include <string.h>
#include "recipes/recipe_internal.h"

static int oom(dt_ctx *ctx) { return dt_fail(ctx, DT_ENOMEM, "out of memory while applying an override"); }

static bool key_char(char c) {
    return c == '_' || c == '-' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
}

// The value under `name` in a mapping, as a pointer to its slot, or NULL.
static dt_ynode **slot(dt_ynode *map, const char *name) {
    for (size_t i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i]->text, name)) return &map->items[i];
    return NULL;
}

// Adds `name: value` to a mapping; the new key takes the override as its origin.
static int add(dt_ctx *ctx, dt_ynode *map, const char *name, const char *origin, dt_ynode *value) {
    dt_ynode *key = dt_ynode_new(DT_YSCALAR, origin, true);
    if (!key || !(key->text = strdup(name)) || dt_ynode_map_add(map, key, value)) {
        dt_ynode_free(key);
        dt_ynode_free(value);
        return oom(ctx);
    }
    key->plain = true;
    return DT_OK;
}

int dt_rapply_override(dt_ctx *ctx, dt_ynode *root, const char *text) {
    const char *eq = strchr(text, '=');
    size_t klen = eq ? (size_t)(eq - text) : 0;
    bool ok = klen > 0 && text[0] != '.' && text[klen - 1] != '.';
    for (size_t i = 0; ok && i < klen; i++)
        ok = key_char(text[i]) || (text[i] == '.' && text[i + 1] != '.');
    if (!ok)
        return dt_fail(ctx, DT_EINPUT, "command line override '%s': expected KEY=VALUE with a dotted key, "
                       "e.g. train.optimizer.lr=3e-4", text);
    if (root->kind != DT_YMAP)
        return dt_fail(ctx, DT_EINPUT, "command line override '%s': the recipe is not a mapping of keys", text);

    dt_ynode *value;
    int rc = dt_ytree_parse_value(ctx, eq + 1, text, &value);
    if (rc) return rc;

    // Walk the sections, creating any that are missing. A section written as something else (a
    // scalar, or null) is replaced by a mapping: the override says what the section should hold.
    char *path = strndup(text, klen);
    if (!path) { dt_ynode_free(value); return oom(ctx); }
    dt_ynode *map = root;
    char *seg = path;
    for (char *dot; (dot = strchr(seg, '.')); seg = dot + 1) {
        *dot = 0;
        dt_ynode **s = slot(map, seg);
        if (s && (*s)->kind == DT_YMAP) { map = *s; continue; }
        dt_ynode *section = dt_ynode_new(DT_YMAP, text, true);
        if (!section) { rc = oom(ctx); break; }
        if (s) {
            dt_ynode_free(*s);
            *s = section;
        } else if ((rc = add(ctx, map, seg, text, section))) {
            break;
        }
        map = section;
    }
    if (!rc) {
        dt_ynode **s = slot(map, seg);
        if (s) {
            dt_ynode_free(*s);
            *s = value;
        } else {
            rc = add(ctx, map, seg, text, value);
        }
        value = NULL;
    }
    dt_ynode_free(value);
    free(path);
    return rc;
}

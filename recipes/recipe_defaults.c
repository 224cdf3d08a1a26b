// Defaults: every key the recipe did not give takes the table's default, parsed from its YAML text by
// the same code as a user's value, so the README's default column is exactly what is used.
#include <string.h>
#include "recipes/recipe_internal.h"

// What a missing required key should hold, for the message.
static const char *required_hint(const char *path) {
    if (!strcmp(path, "model.path")) return "a Hugging Face model folder or a llama2.c .bin file";
    if (!strcmp(path, "data.train")) return "one or more .jsonl or .jsonl.gz files";
    if (!strcmp(path, "output_dir")) return "the folder for checkpoints and the trained adapter";
    return "a value";
}

// The deepest node of the tree on the way to `path`, to point a "missing key" message at its section.
static const dt_ynode *nearest_section(const dt_ynode *root, const char *path) {
    const dt_ynode *at = root;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *seg = strtok(buf, "."), *next; seg; seg = next) {
        next = strtok(NULL, ".");
        if (!next || at->kind != DT_YMAP) break;   // stop at the key's own section
        const dt_ynode *child = NULL;
        for (size_t i = 0; i < at->n; i++)
            if (!strcmp(at->keys[i]->text, seg)) child = at->items[i];
        if (!child || child->kind != DT_YMAP) break;
        at = child;
    }
    return at;
}

int dt_rapply_defaults(dt_rload *L) {
    for (int i = 0; i < DT_RECIPE_NKEYS; i++) {
        const dt_rkey *k = &dt_recipe_keys[i];
        if (k->kind == DT_RK_SECTION || L->key_at[i] || (k->flags & DT_RF_RULE)) continue;
        if (k->flags & DT_RF_REQUIRED)
            return dt_yfail(L->ctx, nearest_section(L->root, k->path), "missing required key '%s' (%s)",
                            k->path, required_hint(k->path));
        dt_ynode *v;
        int rc = dt_ytree_parse_value(L->ctx, k->def, "built-in default", &v);
        if (!rc) rc = dt_rconvert_value(L, i, v);
        dt_ynode_free(v);
        // A default that does not pass its own key's checks is a bug in the table, not bad input.
        if (rc) return dt_prefix(L->ctx, DT_EINTERNAL, "default of '%s': ", k->path);
    }
    return DT_OK;
}

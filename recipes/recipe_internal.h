// Internal: the state of one dt_recipe_load, shared by the steps in recipe_*.c.
#ifndef DT_RECIPE_INTERNAL_H
#define DT_RECIPE_INTERNAL_H
#include <stdbool.h>
#include "recipes/recipe.h"
#include "recipes/recipe_schema.h"
#include "recipes/recipe_tree.h"

typedef struct {
    dt_ctx *ctx;
    dt_recipe *r;
    const dt_ynode *root;
    const char *recipe_dir;                  // absolute folder of the recipe: base of the file's paths
    const char *cwd;                         // base of the overrides' paths
    const dt_ynode *key_at[DT_RECIPE_NKEYS]; // where each key was written, or NULL
    const dt_ynode *val_at[DT_RECIPE_NKEYS]; // its value node
} dt_rload;

// recipe_convert.c: checks every key of the tree against the table and stores its value.
int dt_rconvert_tree(dt_rload *L);
// Stores a key's value from a node (shared with the defaults).
int dt_rconvert_value(dt_rload *L, int key, const dt_ynode *v);
// recipe_defaults.c: stores the table's default of every key that was not given; missing required keys fail.
int dt_rapply_defaults(dt_rload *L);
// recipe_rules.c: rules between keys, and the defaults that depend on other keys.
int dt_rapply_rules(dt_rload *L);
// recipe_override.c: sets "a.b.c=value" in the tree, creating sections as needed.
int dt_rapply_override(dt_ctx *ctx, dt_ynode *root, const char *text);

// recipe_value.c: scalar syntax, shared with the emitter so that what it prints reads back the same.
bool dt_rscalar_bool(const char *s, bool *out);
bool dt_rscalar_int(const char *s, int64_t *out);    // decimal only; false on overflow
bool dt_rscalar_float(const char *s, double *out);   // decimal and exponent forms; finite only
// Describes a node for "got ..." in messages.
void dt_rdescribe(const dt_ynode *n, char *buf, size_t size);
// Describes a key's allowed range ("> 0", "in [0, 1)", "from 1 to 65536").
void dt_rrange(const dt_rkey *k, char *buf, size_t size);

// recipe_suggest.c: the known name closest to `word`, or NULL when none is close enough.
const char *dt_rsuggest(const char *word, const char *const *names, int n);

// recipe_path.c: `p` made absolute against `base` and normalised ("a/./b/../c" -> "a/c"); malloc'd.
char *dt_rpath_resolve(const char *base, const char *p);
// The folder part of an absolute path; malloc'd.
char *dt_rpath_dirname(const char *p);

#endif

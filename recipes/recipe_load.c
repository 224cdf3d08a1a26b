// dt_recipe_load: read the file, apply overrides, check and store every key, fill defaults, apply the
// rules between keys. Each step is its own file; this one only runs them in order and cleans up.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "recipes/recipe_internal.h"

void dt_recipe_free(dt_recipe *r) {
    if (!r) return;
    free(r->recipe_path);
    free(r->model.path);
    free(r->model.tokenizer);
    free(r->model.name_or_path);
    for (int i = 0; i < r->method.target_modules.n; i++) free(r->method.target_modules.items[i]);
    free(r->method.target_modules.items);
    free(r->method.layers_to_transform.items);
    free(r->method.init_from);
    free(r->method.init_text);
    for (int i = 0; i < r->method.feedforward_modules.n; i++) free(r->method.feedforward_modules.items[i]);
    free(r->method.feedforward_modules.items);
    for (int i = 0; i < r->data.train.n; i++) free(r->data.train.items[i]);
    free(r->data.train.items);
    for (int i = 0; i < r->data.val.n; i++) free(r->data.val.items[i]);
    free(r->data.val.items);
    free(r->output_dir);
    free(r->resume_path);
    memset(r, 0, sizeof *r);
}

int dt_recipe_load(dt_ctx *ctx, const char *path, const char *const *overrides, int n_overrides,
                   dt_recipe *out) {
    memset(out, 0, sizeof *out);
    dt_ynode *root = NULL;
    char *abs = NULL, *dir = NULL, *cwd = NULL;
    int rc = dt_ytree_load_file(ctx, path, &root);
    for (int i = 0; !rc && i < n_overrides; i++) rc = dt_rapply_override(ctx, root, overrides[i]);
    if (!rc && !(cwd = getcwd(NULL, 0)))
        rc = dt_fail(ctx, DT_EIO, "cannot read the current folder: %s", strerror(errno));
    // By text, not realpath: a recipe reached through a symlink is relative to the folder it is seen in.
    if (!rc && !(abs = dt_rpath_resolve(cwd, path))) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (!rc && !(dir = dt_rpath_dirname(abs))) rc = dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (!rc) {
        dt_rload L = {.ctx = ctx, .r = out, .root = root, .recipe_dir = dir, .cwd = cwd};
        rc = dt_rconvert_tree(&L);
        if (!rc) rc = dt_rapply_defaults(&L);
        if (!rc) rc = dt_rapply_rules(&L);
    }
    if (!rc) {
        out->recipe_path = abs;
        abs = NULL;
    } else {
        dt_recipe_free(out);
    }
    dt_ynode_free(root);
    free(abs);
    free(dir);
    free(cwd);
    return rc;
}

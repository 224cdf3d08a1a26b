#include "tools/run_identity.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// 64-bit FNV-1a, continued from h.
static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
#define FNV_START 14695981039346656037ull

// The recipe as YAML with the keys that do not change the trained weights reset: where the output
// goes, whether this is a resume, the device and thread count, and how often to log, evaluate and save.
static int recipe_hash(dt_ctx *ctx, const dt_recipe *r, uint64_t *h) {
    dt_recipe c = *r; // a shallow copy: only scalars and pointers are replaced, nothing is freed
    c.output_dir = "";
    c.resume = DT_RESUME_NO;
    c.resume_path = NULL;
    c.hardware.device = DT_DEV_CPU;
    c.hardware.threads = 0;
    c.train.log_every_n_steps = 1;
    c.train.eval_every_n_steps = 0;
    c.train.save_every_n_steps = 0;
    c.train.keep_last_n_checkpoints = 0;
    char *text;
    size_t n;
    int rc = dt_recipe_emit_string(ctx, &c, &text, &n);
    if (rc) return rc;
    *h = fnv1a(FNV_START, text, n);
    free(text);
    return DT_OK;
}

static int hash_file(dt_ctx *ctx, const char *path, uint64_t *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return dt_fail(ctx, DT_EIO, "%s: cannot read: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) *h = fnv1a(*h, buf, got);
    int rc = ferror(f) ? dt_fail(ctx, DT_EIO, "%s: read error", path) : DT_OK;
    fclose(f);
    return rc;
}

int dt_run_identity(dt_ctx *ctx, const dt_recipe *r, dt_run_id *id) {
    int rc = recipe_hash(ctx, r, &id->recipe);
    uint64_t h = FNV_START;
    const dt_strlist *lists[2] = {&r->data.train, &r->data.val};
    for (int l = 0; l < 2 && !rc; l++)
        for (int i = 0; i < lists[l]->n && !rc; i++) {
            rc = hash_file(ctx, lists[l]->items[i], &h);
            h = fnv1a(h, "\n", 1); // the file boundary: moving bytes between files changes the fingerprint
        }
    id->data = h;
    return rc;
}

int dt_run_identity_check(dt_ctx *ctx, const char *ckpt_dir, const dt_run_id *want, const dt_run_id *got) {
    const char *why = want->recipe != got->recipe ? "the recipe's training settings differ"
                      : want->data != got->data   ? "the training or validation data files differ"
                                                  : NULL;
    if (!why) return DT_OK;
    return dt_fail(ctx, DT_EINPUT,
                   "%s: this checkpoint belongs to another run (%s: recipe %016llx, data %016llx here; %016llx, "
                   "%016llx in the checkpoint); refusing to resume from it. Start a fresh run with --overwrite, "
                   "or resume with the original recipe and data",
                   ckpt_dir, why, (unsigned long long)want->recipe, (unsigned long long)want->data,
                   (unsigned long long)got->recipe, (unsigned long long)got->data);
}

int dt_run_fresh_output(dt_ctx *ctx, const char *output_dir, bool overwrite) {
    char latest[4200];
    if (dt_checkpoint_latest(output_dir, latest, sizeof latest)) return DT_OK;
    if (!overwrite)
        return dt_fail(ctx, DT_EINPUT,
                       "%s: output_dir holds checkpoints of an earlier run (%s); continue it with resume: true, "
                       "or pass --overwrite to start a fresh run and delete them",
                       output_dir, latest);
    return dt_checkpoint_remove_all(ctx, output_dir);
}

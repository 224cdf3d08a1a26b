#include "optim/checkpoint.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "models/atomic_file.h"
#include "models/safetensors.h"
#include "models/safetensors_write.h"
#include "peft/peft_io.h"

// The optimizer state is saved as one flat block in the adapter's parameter layout, so the version
// changes whenever that layout does (2: per layer, the A's before the B's; see peft/lora.c). 3: the run
// identity (recipe hash and data fingerprint) is recorded; older checkpoints cannot prove their run.
#define CKPT_VERSION "3"

static int rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) return unlink(path);
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        rm_tree(p);
    }
    closedir(d);
    return rmdir(path);
}

// Puts the finished folder tmp at dir. A checkpoint of the same step can already be there (a run
// resumed from an earlier checkpoint redoes later steps; an interrupt on a save step saves again). It
// is swapped out in one rename (RENAME_EXCHANGE), so dir holds a complete checkpoint at every moment:
// deleting it first left, after a kill during the deletion, an empty or partial step-N that
// `resume: true` then took as the newest and failed on. The old one ends up at tmp and is removed.
static int put_in_place(dt_ctx *ctx, const char *tmp, const char *dir, const char *parent) {
    struct stat sb;
    if (stat(dir, &sb)) return dt_atomic_commit_dir(ctx, tmp, dir); // nothing to replace
    int rc = dt_atomic_fsync_dir(ctx, tmp);
    if (rc) return rc;
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        rm_tree(tmp);
        return dt_atomic_fsync_dir(ctx, parent);
    }
    // A file system without the exchange: the old folder moves aside under a name that is not step-N
    // first, so a kill in between leaves an older checkpoint as the newest, never a partial one.
    char old[4200];
    snprintf(old, sizeof old, "%s.old", dir);
    rm_tree(old);
    if (rename(dir, old)) return dt_fail(ctx, DT_EIO, "%s: cannot move the previous checkpoint aside: %s", dir, strerror(errno));
    rc = dt_atomic_commit_dir(ctx, tmp, dir);
    if (!rc) rm_tree(old);
    return rc;
}

int dt_checkpoint_save(dt_ctx *ctx, const char *dir, const dt_adapter *a, const dt_llama *m, const dt_optimizer *o,
                       const dt_train_state *s) {
    char tmp[4096], path[4200], parent[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    rm_tree(tmp); // a leftover from an interrupted save
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash) { *slash = 0; mkdir(parent, 0777); }
    if (mkdir(tmp, 0777)) return dt_fail(ctx, DT_EIO, "%s: cannot create checkpoint folder: %s", tmp, strerror(errno));
    int rc = dt_adapter_save(ctx, a, m, tmp);
    if (!rc) {
        dt_st_writer *w;
        rc = dt_st_writer_init(ctx, &w);
        if (!rc) {
            char buf[64];
            size_t states = o->state ? (o->kind == DT_OPT_ADAMW ? 2 * o->n : o->n) : 0;
            if (states) rc = dt_st_writer_add(ctx, w, "optimizer.state", DT_F32, 1, (int64_t[]){(int64_t)states}, o->state);
            const struct { const char *k; int64_t v; } meta[] = {
                {"step", s->step}, {"epoch", s->epoch}, {"batch", s->batch}, {"optimizer_step", o->step},
                {"optimizer_kind", o->kind}, {"data_seed", (int64_t)s->data_seed}, {"world_size", s->world_size},
                {"step_micro_batches", s->step_micro_batches}};
            for (size_t i = 0; i < sizeof meta / sizeof meta[0] && !rc; i++) {
                snprintf(buf, sizeof buf, "%" PRId64, meta[i].v);
                rc = dt_st_writer_set_metadata(ctx, w, meta[i].k, buf);
            }
            const struct { const char *k; uint64_t v; } ids[] = {{"recipe_hash", s->run.recipe}, {"data_fingerprint", s->run.data}};
            for (size_t i = 0; i < 2 && !rc; i++) {
                snprintf(buf, sizeof buf, "%016" PRIx64, ids[i].v);
                rc = dt_st_writer_set_metadata(ctx, w, ids[i].k, buf);
            }
            if (!rc) rc = dt_st_writer_set_metadata(ctx, w, "deltatune_checkpoint", CKPT_VERSION);
            snprintf(path, sizeof path, "%s/trainer_state.safetensors", tmp);
            if (!rc) rc = dt_st_writer_write(ctx, w, path);
            dt_st_writer_free(w);
        }
    }
    if (!rc) rc = put_in_place(ctx, tmp, dir, slash ? parent : ".");
    if (rc) rm_tree(tmp);
    return rc;
}

static int meta_hex(dt_ctx *ctx, const dt_safetensors *st, const char *path, const char *key, uint64_t *v) {
    const char *s = dt_st_metadata(st, key);
    char *end;
    if (!s || strlen(s) != 16 || (*v = strtoull(s, &end, 16), *end))
        return dt_fail(ctx, DT_EINPUT, "%s: metadata '%s' is missing or not 16 hex digits", path, key);
    return DT_OK;
}

static int meta_i64(dt_ctx *ctx, const dt_safetensors *st, const char *path, const char *key, int64_t *v) {
    const char *s = dt_st_metadata(st, key);
    char *end;
    if (!s || (*v = strtoll(s, &end, 10), *end))
        return dt_fail(ctx, DT_EINPUT, "%s: metadata '%s' is missing or not an integer", path, key);
    return DT_OK;
}

int dt_checkpoint_load(dt_ctx *ctx, const char *dir, dt_adapter *a, const dt_llama *m, dt_optimizer *o,
                       dt_train_state *s) {
    dt_adapter *saved;
    int rc = dt_adapter_load(ctx, dir, m, &saved);
    if (rc) return rc;
    // The optimizer state is copied as one block, so every tensor must have the same shape in both: with
    // per-module ranks (rank_pattern) equal totals do not mean equal layouts.
    bool same = saved->n_params == a->n_params && saved->method == a->method && saved->n_tensors == a->n_tensors;
    for (int i = 0; same && i < a->n_tensors; i++) {
        const dt_tensor *x = &saved->tensors[i], *y = &a->tensors[i];
        same = !strcmp(saved->names[i], a->names[i]) && x->ndim == y->ndim;
        for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == y->shape[d];
    }
    if (!same) {
        dt_adapter_free(saved);
        return dt_fail(ctx, DT_EINPUT, "%s: the checkpoint's adapter does not match the recipe's (method, ranks or modules differ)", dir);
    }
    memcpy(a->params, saved->params, a->n_params * sizeof(float));
    dt_adapter_free(saved);
    char path[4096];
    snprintf(path, sizeof path, "%s/trainer_state.safetensors", dir);
    dt_safetensors *st;
    if ((rc = dt_st_open(ctx, path, &st))) return rc;
    const char *ver = dt_st_metadata(st, "deltatune_checkpoint");
    int64_t kind = 0, seed = 0;
    if (!ver || strcmp(ver, CKPT_VERSION))
        rc = dt_fail(ctx, DT_EINPUT, "%s: not a deltatune checkpoint of version %s (older versions do not record which run wrote them)",
                     path, CKPT_VERSION);
    if (!rc) rc = meta_i64(ctx, st, path, "step", &s->step);
    if (!rc) rc = meta_i64(ctx, st, path, "epoch", &s->epoch);
    if (!rc) rc = meta_i64(ctx, st, path, "batch", &s->batch);
    if (!rc) rc = meta_i64(ctx, st, path, "optimizer_step", &o->step);
    if (!rc) rc = meta_i64(ctx, st, path, "optimizer_kind", &kind);
    if (!rc) rc = meta_i64(ctx, st, path, "data_seed", &seed);
    if (!rc) rc = meta_hex(ctx, st, path, "recipe_hash", &s->run.recipe);
    if (!rc) rc = meta_hex(ctx, st, path, "data_fingerprint", &s->run.data);
    // Written since data-parallel training; absent from older checkpoints (0: unknown).
    s->world_size = s->step_micro_batches = 0;
    if (!rc && dt_st_metadata(st, "world_size")) rc = meta_i64(ctx, st, path, "world_size", &s->world_size);
    if (!rc && dt_st_metadata(st, "step_micro_batches")) rc = meta_i64(ctx, st, path, "step_micro_batches", &s->step_micro_batches);
    if (!rc && kind != o->kind) rc = dt_fail(ctx, DT_EINPUT, "%s: saved with another optimizer than the recipe's", path);
    size_t states = o->state ? (o->kind == DT_OPT_ADAMW ? 2 * o->n : o->n) : 0;
    if (!rc && states) rc = dt_st_read_f32(ctx, st, "optimizer.state", o->state, 1, (int64_t[]){(int64_t)states});
    s->data_seed = (uint64_t)seed;
    dt_st_close(st);
    return rc;
}

// Step number of a "step-N" folder name, or -1.
static int64_t step_of(const char *name) {
    char *end;
    if (strncmp(name, "step-", 5)) return -1;
    long long v = strtoll(name + 5, &end, 10);
    return *end || v < 0 ? -1 : v;
}

int dt_checkpoint_latest(const char *output_dir, char *buf, size_t n) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/checkpoints", output_dir);
    DIR *d = opendir(dir);
    if (!d) return -1;
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t s = step_of(e->d_name);
        if (s > best) best = s;
    }
    closedir(d);
    if (best < 0) return -1;
    snprintf(buf, n, "%s/step-%lld", dir, (long long)best);
    return 0;
}

int dt_checkpoint_remove_all(dt_ctx *ctx, const char *output_dir) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/checkpoints", output_dir);
    if (rm_tree(dir) && errno != ENOENT) return dt_fail(ctx, DT_EIO, "%s: cannot remove: %s", dir, strerror(errno));
    return DT_OK;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

// Never removes step-`just_saved`, the checkpoint the caller has just written and names in its
// messages: after a resume from an earlier checkpoint, folders of later steps from the first pass of
// the same run can still be there, and by step number alone the new one would be the oldest.
void dt_checkpoint_prune(const char *output_dir, int keep, int64_t just_saved) {
    if (keep <= 0) return;
    char dir[4096], p[4352];
    snprintf(dir, sizeof dir, "%s/checkpoints", output_dir);
    DIR *d = opendir(dir);
    if (!d) return;
    int64_t steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        int64_t s = step_of(e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof steps[0], cmp_i64);
    for (int i = 0; i + keep < n; i++) {
        if (steps[i] == just_saved) continue;
        snprintf(p, sizeof p, "%s/step-%lld", dir, (long long)steps[i]);
        rm_tree(p);
    }
}

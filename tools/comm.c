// dt_comm's dispatcher and its one-process implementation (see tools/comm.h).
#include "tools/comm.h"
#include <stdlib.h>
#include <string.h>

void dt_comm_add(float *buf, const float *x, size_t n) {
    // Parallel over elements: each element's additions keep their order, so threads change nothing.
#pragma omp parallel for simd schedule(static) if (n > (1u << 16))
    for (size_t i = 0; i < n; i++) buf[i] += x[i];
}

void dt_comm_fold(float *buf, size_t n, const float *const *local, int n_local) {
    if (n_local <= 0) return;
    if (buf != local[0]) memcpy(buf, local[0], n * sizeof(float));
    for (int k = 1; k < n_local; k++) dt_comm_add(buf, local[k], n);
}

static int env_int(const char *name) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : 0;
}

int dt_comm_env_size(void) {
    // OpenMPI's mpirun; MPICH/Hydra and PMI-2 launchers; Slurm's srun (the tasks of this job step).
    const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int v = env_int(names[i]);
        if (v > 0) return v;
    }
    return 1;
}

static int single_allgather(dt_comm *c, const void *mine, void *all, size_t bytes) {
    (void)c;
    if (all != mine) memmove(all, mine, bytes);
    return DT_OK;
}

static int single_bcast(dt_comm *c, void *buf, size_t bytes, int root) {
    (void)c, (void)buf, (void)bytes, (void)root;
    return DT_OK;
}

static int single_ordered_sum(dt_comm *c, float *buf, size_t n, const float *const *local, int n_local) {
    (void)c;
    dt_comm_fold(buf, n, local, n_local);
    return DT_OK;
}

static void single_close(dt_comm *c) { free(c); }

static const dt_comm_ops single_ops = {single_allgather, single_bcast, single_ordered_sum, single_close};

int dt_comm_open(dt_ctx *ctx, dt_comm **out) {
    *out = NULL;
    int expected = dt_comm_env_size();
    // Launched by mpirun or srun: OMPI_COMM_WORLD_SIZE / PMI / PMIx variables are set even for one task.
    bool launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") || expected > 1;
#ifdef DT_MPI
    if (launched) {
        int rc = dt_comm_mpi_open(ctx, out);
        if (rc) return rc;
        if ((*out)->size != expected && expected > 1) {
            int got = (*out)->size;
            dt_comm_close(*out);
            *out = NULL;
            return dt_fail(ctx, DT_EUNSUPPORTED,
                           "the launcher started %d processes but MPI joined them into a job of %d (with srun, pass "
                           "--mpi=pmix or --mpi=pmi2 so the tasks find each other)", expected, got);
        }
        return DT_OK;
    }
#else
    if (launched && expected > 1)
        return dt_fail(ctx, DT_EUNSUPPORTED,
                       "started as one of %d processes, but this deltatune was built without MPI: rebuild with make MPI=1 "
                       "(needs libopenmpi-dev), or run a single process", expected);
#endif
    dt_comm *c = calloc(1, sizeof *c);
    if (!c) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    *c = (dt_comm){.rank = 0, .size = 1, .local_rank = 0, .local_size = 1, .kind = "single", .ops = &single_ops};
    *out = c;
    return DT_OK;
}

int dt_comm_for_cuda(dt_ctx *ctx, dt_comm **c) {
#ifdef DT_NCCL
    if (!strcmp((*c)->kind, "mpi")) return dt_comm_nccl_open(ctx, *c, c);
#endif
    (void)ctx, (void)c;
    return DT_OK;
}

void dt_comm_close(dt_comm *c) {
    if (c) c->ops->close(c);
}

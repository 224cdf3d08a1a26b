// The communication layer of data-parallel training: a handful of collectives behind one small table, so
// the trainer never names MPI or NCCL. Three implementations:
//   - one process (tools/comm.c): world size 1, every collective is a copy;
//   - MPI (tools/comm_mpi.c, in builds with MPI): processes started by mpirun or srun;
//   - NCCL (tools/comm_nccl.c, in CUDA builds with MPI): the same processes, one GPU each (local rank ->
//     device), the gradient sum done by NCCL on device buffers; the NCCL id travels over MPI.
// dt_comm_open picks one from how the process was started. The trainer is the only user.
#ifndef DT_COMM_H
#define DT_COMM_H
#include <stdbool.h>
#include <stddef.h>
#include "autograd/context.h"

typedef struct dt_comm dt_comm;

typedef struct dt_comm_ops {
    // Every rank's `bytes` bytes of host memory, concatenated in rank order, into `all` on every rank.
    int (*allgather)(dt_comm *c, const void *mine, void *all, size_t bytes);
    // root's `bytes` bytes of host memory into buf on every rank.
    int (*bcast)(dt_comm *c, void *buf, size_t bytes, int root);
    // The ordered sum of the float blocks local[0..n_local) of every rank (n floats each), into buf on
    // every rank: buf = local_0[0] + local_0[1] + ... + local_1[0] + ... + local_{N-1}[n_local-1], added
    // left to right elementwise in float, which is exactly what one process accumulating them in that
    // order computes. The order never depends on timing or on the number of ranks, so the result is
    // bit-identical for any world size. buf may be local[0]. All ranks pass the same n and n_local.
    int (*ordered_sum)(dt_comm *c, float *buf, size_t n, const float *const *local, int n_local);
    void (*close)(dt_comm *c);
} dt_comm_ops;

struct dt_comm {
    int rank, size;              // in the job
    int local_rank, local_size;  // among the ranks of this node
    const char *kind;            // "single", "mpi" or "nccl"
    int reporter;                // the rank that prints the job's error: 0, or the lowest failing rank
    const dt_comm_ops *ops;
    void *impl;
};

// From the environment: under mpirun/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, SLURM_STEP_NUM_TASKS)
// MPI, otherwise one process. A job of several processes in a build without MPI is refused (each would
// believe it is alone and they would overwrite each other's outputs).
int dt_comm_open(dt_ctx *ctx, dt_comm **out);
// For training on GPUs (device: cuda): in CUDA builds with MPI, replaces an MPI communicator by the NCCL
// one built over it, which also selects this process's GPU (local rank modulo the GPUs of the node)
// before anything else touches CUDA. Elsewhere it leaves *c as it is.
int dt_comm_for_cuda(dt_ctx *ctx, dt_comm **c);
void dt_comm_close(dt_comm *c); // NULL is fine

// The one-process implementation's fold, shared by the others: buf = local[0] + local[1] + ... (n floats).
void dt_comm_fold(float *buf, size_t n, const float *const *local, int n_local);
// buf += x (n floats), the step every implementation's fold is made of.
void dt_comm_add(float *buf, const float *x, size_t n);

// The world size the launcher announced in the environment (1 when not launched by one).
int dt_comm_env_size(void);

#ifdef DT_MPI
int dt_comm_mpi_open(dt_ctx *ctx, dt_comm **out);
#endif
#ifdef DT_NCCL
// Takes over an open MPI communicator (which it keeps for the host collectives).
int dt_comm_nccl_open(dt_ctx *ctx, dt_comm *mpi, dt_comm **out);
#endif

#endif

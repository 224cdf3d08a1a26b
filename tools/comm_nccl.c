// dt_comm over NCCL, for `device: cuda` in CUDA builds with MPI (see tools/comm.h). One process per GPU:
// the process of local rank L drives GPU L modulo the node's GPUs. MPI starts the processes, carries the
// NCCL id from rank 0 to the others and keeps the small host collectives (the step's status and counts);
// NCCL carries the gradient block, device to device.
//
// The ordered sum is the same pipelined chain as tools/comm_mpi.c's (rank r receives the sum of ranks
// < r, adds its blocks in order, passes it on; the last rank broadcasts), not ncclAllReduce, whose ring
// or tree order would make the result depend on the number of GPUs. The additions are cuBLAS saxpy with
// alpha 1, which computes fma(1, x, y) = x + y: the same float sums as the CPU path.
//
// The blocks may live in host memory (the trainer's gradient block on a CPU adapter) or device memory;
// host blocks are staged through a device buffer.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include "tools/comm.h"

#define CHUNK (1u << 20) // floats per NCCL message of the chain: 4 MiB

typedef struct {
    dt_comm *mpi;          // host collectives
    ncclComm_t nccl;
    cudaStream_t stream;
    cublasHandle_t blas;
    float *stage;          // (cap) device copies of host blocks: the sum, then the local blocks
    size_t cap;
} nccl_impl;

static int n_allgather(dt_comm *c, const void *mine, void *all, size_t bytes) {
    nccl_impl *p = c->impl;
    return p->mpi->ops->allgather(p->mpi, mine, all, bytes);
}

static int n_bcast(dt_comm *c, void *buf, size_t bytes, int root) {
    nccl_impl *p = c->impl;
    return p->mpi->ops->bcast(p->mpi, buf, bytes, root);
}

static bool on_device(const void *ptr) {
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, ptr) != cudaSuccess) { cudaGetLastError(); return false; }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

// y += x on the device, n floats (cuBLAS counts are ints: long blocks go in pieces).
static bool dev_add(nccl_impl *p, float *y, const float *x, size_t n) {
    const float one = 1.0f;
    for (size_t off = 0; off < n; off += 1u << 30) {
        int len = (int)(n - off < (1u << 30) ? n - off : (1u << 30));
        if (cublasSaxpy(p->blas, len, &one, x + off, 1, y + off, 1) != CUBLAS_STATUS_SUCCESS) return false;
    }
    return true;
}

static int n_ordered_sum(dt_comm *c, float *buf, size_t n, const float *const *local, int n_local) {
    nccl_impl *p = c->impl;
    bool host = !on_device(buf);
    float *sum = buf;
    const float *dl[n_local > 0 ? n_local : 1];
    for (int k = 0; k < n_local; k++) dl[k] = local[k];
    if (host) {
        size_t need = n * (size_t)(n_local + 1);
        if (need > p->cap) {
            cudaFree(p->stage);
            p->cap = 0;
            if (cudaMalloc((void **)&p->stage, need * sizeof(float)) != cudaSuccess) return DT_ENOMEM;
            p->cap = need;
        }
        sum = p->stage;
        for (int k = 0; k < n_local; k++) {
            float *d = p->stage + (size_t)(k + 1) * n;
            if (cudaMemcpyAsync(d, local[k], n * sizeof(float), cudaMemcpyHostToDevice, p->stream) != cudaSuccess) return DT_EIO;
            dl[k] = d;
        }
    }
    if (c->rank == 0 && n_local > 0) {
        if (sum != dl[0] && cudaMemcpyAsync(sum, dl[0], n * sizeof(float), cudaMemcpyDeviceToDevice, p->stream) != cudaSuccess)
            return DT_EIO;
        for (int k = 1; k < n_local; k++) if (!dev_add(p, sum, dl[k], n)) return DT_EIO;
    }
    for (size_t off = 0; off < n && c->size > 1; off += CHUNK) {
        size_t len = n - off < CHUNK ? n - off : CHUNK;
        if (c->rank > 0) {
            if (ncclRecv(sum + off, len, ncclFloat, c->rank - 1, p->nccl, p->stream) != ncclSuccess) return DT_EIO;
            for (int k = 0; k < n_local; k++) if (!dev_add(p, sum + off, dl[k] + off, len)) return DT_EIO;
        }
        if (c->rank < c->size - 1 && ncclSend(sum + off, len, ncclFloat, c->rank + 1, p->nccl, p->stream) != ncclSuccess)
            return DT_EIO;
    }
    if (c->size > 1 && ncclBroadcast(sum, sum, n, ncclFloat, c->size - 1, p->nccl, p->stream) != ncclSuccess) return DT_EIO;
    if (host && cudaMemcpyAsync(buf, sum, n * sizeof(float), cudaMemcpyDeviceToHost, p->stream) != cudaSuccess) return DT_EIO;
    return cudaStreamSynchronize(p->stream) == cudaSuccess ? DT_OK : DT_EIO;
}

static void n_close(dt_comm *c) {
    nccl_impl *p = c->impl;
    if (p) {
        if (p->nccl) ncclCommDestroy(p->nccl);
        if (p->blas) cublasDestroy(p->blas);
        if (p->stream) cudaStreamDestroy(p->stream);
        cudaFree(p->stage);
        dt_comm_close(p->mpi);
        free(p);
    }
    free(c);
}

static const dt_comm_ops nccl_ops = {n_allgather, n_bcast, n_ordered_sum, n_close};

int dt_comm_nccl_open(dt_ctx *ctx, dt_comm *mpi, dt_comm **out) {
    int devices = 0;
    cudaError_t ce = cudaGetDeviceCount(&devices);
    if (ce != cudaSuccess || devices == 0)
        return dt_fail(ctx, DT_EUNSUPPORTED, "rank %d: hardware.device: cuda, but no GPU is visible (%s)", mpi->rank,
                       ce != cudaSuccess ? cudaGetErrorString(ce) : "0 devices");
    if (mpi->local_size > devices)
        return dt_fail(ctx, DT_EUNSUPPORTED, "%d processes on this node share %d GPU%s: start one process per GPU",
                       mpi->local_size, devices, devices == 1 ? "" : "s");
    if ((ce = cudaSetDevice(mpi->local_rank)) != cudaSuccess)
        return dt_fail(ctx, DT_EUNSUPPORTED, "rank %d: cannot use GPU %d: %s", mpi->rank, mpi->local_rank, cudaGetErrorString(ce));
    ncclUniqueId id;
    ncclResult_t nr = mpi->rank == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
    if (nr != ncclSuccess) return dt_fail(ctx, DT_EIO, "NCCL: %s", ncclGetErrorString(nr));
    if (mpi->ops->bcast(mpi, &id, sizeof id, 0)) return dt_fail(ctx, DT_EIO, "rank %d: receiving the NCCL id failed", mpi->rank);
    dt_comm *c = calloc(1, sizeof *c);
    nccl_impl *p = calloc(1, sizeof *p);
    if (!c || !p) { free(c); free(p); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    *c = *mpi;
    c->kind = "nccl";
    c->ops = &nccl_ops;
    c->impl = p;
    if ((nr = ncclCommInitRank(&p->nccl, mpi->size, id, mpi->rank)) != ncclSuccess) {
        free(p), free(c);
        return dt_fail(ctx, DT_EIO, "rank %d: NCCL init failed: %s", mpi->rank, ncclGetErrorString(nr));
    }
    if (cudaStreamCreate(&p->stream) != cudaSuccess || cublasCreate(&p->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(p->blas, p->stream) != CUBLAS_STATUS_SUCCESS) {
        p->mpi = NULL; // the caller still owns it
        n_close(c);
        return dt_fail(ctx, DT_EIO, "rank %d: cannot create a CUDA stream or cuBLAS handle", mpi->rank);
    }
    p->mpi = mpi;
    *out = c;
    return DT_OK;
}

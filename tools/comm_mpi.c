// dt_comm over MPI (built with MPI=1 or when mpicc is found; see tools/comm.h).
//
// The ordered sum is a pipelined chain instead of MPI_Allreduce, whose summation order depends on the
// algorithm MPI picks for the message size and the world size: rank 0 folds its blocks and sends the
// partial sum to rank 1, which adds its blocks in order and passes it on, ...; the last rank then
// broadcasts the total. The payload is cut into chunks so the ranks of the chain work at the same time
// (rank r adds chunk c while rank r+1 adds chunk c-1): each rank sends and receives the block about
// twice, as a ring all-reduce does, at the price of N-1 hops of latency instead of log N.
#include "tools/comm.h"
#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1u << 16) // floats per message of the chain: 256 KiB

typedef struct {
    MPI_Comm world;
    bool finalize;       // we initialised MPI, so we finalise it
} mpi_impl;

static int mpi_fail(dt_ctx *ctx, const char *what, int err) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, s, &len);
    return dt_fail(ctx, DT_EIO, "MPI %s failed: %s", what, s);
}

// MPI counts are ints: longer buffers go in pieces.
static int bytes_bcast(MPI_Comm w, void *buf, size_t bytes, int root) {
    for (size_t off = 0; off < bytes; off += INT_MAX) {
        size_t len = bytes - off < INT_MAX ? bytes - off : INT_MAX;
        int err = MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, root, w);
        if (err) return err;
    }
    return MPI_SUCCESS;
}

static int m_allgather(dt_comm *c, const void *mine, void *all, size_t bytes) {
    mpi_impl *p = c->impl;
    // The records gathered are small (a step's status and counts); a larger one would need MPI_Allgatherv pieces.
    if (bytes > INT_MAX) return DT_EINTERNAL;
    int err = MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, p->world);
    return err ? DT_EIO : DT_OK;
}

static int m_bcast(dt_comm *c, void *buf, size_t bytes, int root) {
    mpi_impl *p = c->impl;
    return bytes_bcast(p->world, buf, bytes, root) ? DT_EIO : DT_OK;
}

static int m_ordered_sum(dt_comm *c, float *buf, size_t n, const float *const *local, int n_local) {
    mpi_impl *p = c->impl;
    if (c->size == 1) { dt_comm_fold(buf, n, local, n_local); return DT_OK; }
    size_t chunks = (n + CHUNK - 1) / CHUNK;
    MPI_Request *req = malloc((chunks ? chunks : 1) * sizeof *req);
    if (!req) return DT_ENOMEM;
    int err = MPI_SUCCESS;
    if (c->rank == 0) dt_comm_fold(buf, n, local, n_local);
    for (size_t ch = 0; ch < chunks && !err; ch++) {
        size_t off = ch * CHUNK, len = n - off < CHUNK ? n - off : CHUNK;
        if (c->rank > 0) {
            // buf's chunk is the sum of every earlier rank's blocks; add ours after it, in order.
            err = MPI_Recv(buf + off, (int)len, MPI_FLOAT, c->rank - 1, (int)(ch & 0x7fff), p->world, MPI_STATUS_IGNORE);
            for (int k = 0; k < n_local && !err; k++) dt_comm_add(buf + off, local[k] + off, len);
        }
        req[ch] = MPI_REQUEST_NULL;
        if (!err && c->rank < c->size - 1)
            err = MPI_Isend(buf + off, (int)len, MPI_FLOAT, c->rank + 1, (int)(ch & 0x7fff), p->world, &req[ch]);
    }
    if (!err) err = MPI_Waitall((int)chunks, req, MPI_STATUSES_IGNORE);
    free(req);
    if (!err) err = bytes_bcast(p->world, buf, n * sizeof(float), c->size - 1);
    return err ? DT_EIO : DT_OK;
}

static void m_close(dt_comm *c) {
    mpi_impl *p = c->impl;
    if (p) {
        if (p->finalize) MPI_Finalize();
        free(p);
    }
    free(c);
}

static const dt_comm_ops mpi_ops = {m_allgather, m_bcast, m_ordered_sum, m_close};

int dt_comm_mpi_open(dt_ctx *ctx, dt_comm **out) {
    int inited = 0, provided = 0, err;
    MPI_Initialized(&inited);
    // FUNNELED: OpenMP threads compute, only the main thread calls MPI.
    if (!inited && (err = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided))) return mpi_fail(ctx, "init", err);
    dt_comm *c = calloc(1, sizeof *c);
    mpi_impl *p = calloc(1, sizeof *p);
    if (!c || !p) { free(c); free(p); return dt_fail(ctx, DT_ENOMEM, "out of memory"); }
    p->finalize = !inited;
    p->world = MPI_COMM_WORLD;
    // Errors come back as codes (a lost peer is reported, not a hang in an error handler).
    MPI_Comm_set_errhandler(p->world, MPI_ERRORS_RETURN);
    MPI_Comm_rank(p->world, &c->rank);
    MPI_Comm_size(p->world, &c->size);
    MPI_Comm node;
    if ((err = MPI_Comm_split_type(p->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node))) {
        free(p), free(c);
        return mpi_fail(ctx, "split by node", err);
    }
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    c->kind = "mpi";
    c->ops = &mpi_ops;
    c->impl = p;
    *out = c;
    return DT_OK;
}

// Attention of the 16-bit tables (hardware.dtype bf16 / f16 on cuda) through cuDNN's fused flash
// attention: the operation graph NVIDIA's cudnn-frontend builds for its composite SDPA node, made here
// with cuDNN 9's backend (graph) C API, which pattern-matches it to the fused engines.
//  - forward: S = Q K^T (f32), S * scale, causal mask (GEN_INDEX rows and columns, CMP_GE, BINARY_SELECT
//    with -inf; packed rows add CMP_GE of the column against our seg_start and a LOGICAL_AND), softmax spelled out (max, sub, exp, sum, div) with Stats = max + log(sum) as an
//    output, P rounded to the 16-bit type, O = P V. Stats is our lse (B, H, T): the same natural-log
//    logsumexp of the scaled scores.
//  - backward: D = rowsum(dO * O) as a non-virtual tensor, P = exp(S * scale - Stats) under the mask,
//    dV = P^T dO, dS = P (dO V^T - D) * scale, dK = dS^T Q, dQ = dS K into an f32 accumulator (which
//    we read as our dq, so dq is not rounded to 16 bits) and its 16-bit copy. Under grouped-query
//    attention dK and dV are per query head and a reduction sums each group.
// Layouts: our q/out (B, T, H, hd) and k/v (B, T, KV, hd) are cuDNN's BSHD through strides (dims
// [B, heads, T, hd]); K^T and V^T are the same memory with the last two strides swapped.
// Our tensors are f32, so q, k, v (and o, dO) are rounded to 16 bits in the attention scratch first;
// out, dk and dv are widened back (dq comes from the f32 accumulator).
//
// When this path is not taken, the hand-written flash kernel (attention.cu) runs instead, with the same
// results within 16-bit rounding: the f32 table; a head size cuDNN does not take; a cuDNN without the
// engines (no plan for the graph; packed rows then need the plan with the segment mask, which uses the
// fused kernel's arbitrary pointwise mask with a tensor input: if that one is refused, rows of one
// segment still take the plain causal plan). And, because this graph has never been
// run against the real library by us: the first execution of each plan is compared with the hand
// kernel, and a disagreement turns cuDNN attention off for the process (dt_backend_cuda_attention_note
// says why).
#include <cudnn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "autograd/cuda/cuda_internal.h"

// The graph's tensors with data: our buffers (ids below U_VIRTUAL); the rest are virtual.
enum { U_Q = 1, U_K, U_V, U_O, U_STATS, U_SCALE, U_NEGINF, U_DO, U_DQ, U_DK, U_DV, U_SUM, U_DQACC, U_ONE, U_SEG, U_VIRTUAL = 100 };

#define MAX_DESCS 192 // the backward graph makes about 110 descriptors
#define MAX_CFGS 8    // engine configurations tried, in the heuristic's order
#define PLAN_CACHE 8  // plans kept (least recently used goes)

// The descriptors of one plan: every one made is kept until the plan goes, as the frontend keeps them.
typedef struct {
    cudnnBackendDescriptor_t d[MAX_DESCS];
    int n;
    int64_t next_uid;
    cudnnStatus_t st; // the first failure, and its call
    const char *what;
} builder;

typedef struct {
    bool used, bwd, seg, checked;
    cudnnDataType_t type;
    int64_t B, T, H, KV, hd;
    builder keep;
    cudnnBackendDescriptor_t plan;
    int64_t ws; // workspace bytes the plan asks for
    unsigned long long last;
} sdpa_plan;

struct dt_cuda_sdpa {
    cudnnHandle_t h;
    bool off;
    char off_why[240];          // why cuDNN attention is off (off)
    long long on_dnn, on_hand;  // calls of the 16-bit tables run by cuDNN / by the hand kernel
    const char *hand_why;       // the last reason a 16-bit call went to the hand kernel
    char no_plan[200];          // the last shape cuDNN had no plan for
    char note[640];             // dt_backend_cuda_attention_note's text
    sdpa_plan plans[PLAN_CACHE];
    unsigned long long clock;
    int32_t *seg_host; // seg_start downloaded, to tell packed rows (grown as needed)
    size_t seg_cap;
};

// ---- building graphs ----

static cudnnBackendDescriptor_t mk(builder *b, cudnnBackendDescriptorType_t kind) {
    if (b->st != CUDNN_STATUS_SUCCESS) return NULL;
    if (b->n == MAX_DESCS) { b->st = CUDNN_STATUS_NOT_SUPPORTED; b->what = "too many descriptors"; return NULL; }
    cudnnBackendDescriptor_t d = NULL;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(kind, &d);
    if (s != CUDNN_STATUS_SUCCESS) { b->st = s; b->what = "cudnnBackendCreateDescriptor"; return NULL; }
    b->d[b->n++] = d;
    return d;
}

static void set(builder *b, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                int64_t count, const void *v, const char *what) {
    if (b->st != CUDNN_STATUS_SUCCESS || !d) return;
    cudnnStatus_t s = cudnnBackendSetAttribute(d, name, type, count, v);
    if (s != CUDNN_STATUS_SUCCESS) { b->st = s; b->what = what; }
}

// Attribute name of d is the descriptor v.
static void link(builder *b, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t v,
                 const char *what) {
    set(b, d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v, what);
}

static void fin(builder *b, cudnnBackendDescriptor_t d, const char *what) {
    if (b->st != CUDNN_STATUS_SUCCESS || !d) return;
    cudnnStatus_t s = cudnnBackendFinalize(d);
    if (s != CUDNN_STATUS_SUCCESS) { b->st = s; b->what = what; }
}

static void release(builder *b) {
    for (int i = b->n - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(b->d[i]);
    b->n = 0;
}

// A 4-d tensor: uid 0 makes a virtual one with the next free id.
static cudnnBackendDescriptor_t tensor(builder *b, int64_t uid, cudnnDataType_t t, const int64_t dim[4],
                                       const int64_t stride[4], bool by_value) {
    cudnnBackendDescriptor_t d = mk(b, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    bool virt = uid == 0;
    if (virt) uid = b->next_uid++;
    int64_t align = 16;
    set(b, d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &t, "tensor type");
    set(b, d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim, "tensor dims");
    set(b, d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, stride, "tensor strides");
    set(b, d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid");
    set(b, d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, "tensor alignment");
    set(b, d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt, "tensor virtual");
    if (by_value) set(b, d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value, "tensor by value");
    fin(b, d, "tensor");
    return d;
}

// The shapes, dims then strides. Ours: (B, T, heads, hd) seen as [B, heads, T, hd]; its transpose
// [B, heads, hd, T] over the same memory; packed [B, H, T, hd]; scores [B, H, T, T] and their
// transpose; one value per row [B, H, T, 1]; a scalar.
typedef struct { int64_t dim[4], stride[4]; } shape;
static shape shape_of(int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t s0, int64_t s1, int64_t s2, int64_t s3) {
    shape s = {{d0, d1, d2, d3}, {s0, s1, s2, s3}};
    return s;
}
static shape bshd(int64_t B, int64_t heads, int64_t T, int64_t hd) {
    return shape_of(B, heads, T, hd, T * heads * hd, hd, heads * hd, 1);
}
static shape bshd_t(int64_t B, int64_t heads, int64_t T, int64_t hd) {
    return shape_of(B, heads, hd, T, T * heads * hd, hd, 1, heads * hd);
}
static shape bhsd(int64_t B, int64_t heads, int64_t T, int64_t hd) {
    return shape_of(B, heads, T, hd, heads * T * hd, T * hd, hd, 1);
}
static shape scores(int64_t B, int64_t H, int64_t T) { return shape_of(B, H, T, T, H * T * T, T * T, T, 1); }
static shape scores_t(int64_t B, int64_t H, int64_t T) { return shape_of(B, H, T, T, H * T * T, T * T, 1, T); }
static shape rows(int64_t B, int64_t H, int64_t T) { return shape_of(B, H, T, 1, H * T, T, 1, 1); }
static shape scalar(void) { return shape_of(1, 1, 1, 1, 1, 1, 1, 1); }

static cudnnBackendDescriptor_t T_(builder *b, int64_t uid, cudnnDataType_t t, shape s) {
    return tensor(b, uid, t, s.dim, s.stride, false);
}
static cudnnBackendDescriptor_t V_(builder *b, cudnnDataType_t t, shape s) { return tensor(b, 0, t, s.dim, s.stride, false); }

// y = mode(x [, bb [, t]]); axis >= 0 for GEN_INDEX. The op is appended to ops.
static void pointwise(builder *b, cudnnBackendDescriptor_t *ops, int *n, cudnnPointwiseMode_t mode, cudnnDataType_t prec,
                      cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t bb, cudnnBackendDescriptor_t t,
                      cudnnBackendDescriptor_t y, int64_t axis) {
    cudnnBackendDescriptor_t pw = mk(b, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    set(b, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
    set(b, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec, "pointwise precision");
    if (axis >= 0) set(b, pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, "pointwise axis");
    fin(b, pw, "pointwise");
    cudnnBackendDescriptor_t op = mk(b, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    link(b, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw, "pointwise op");
    link(b, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x, "pointwise x");
    if (bb) link(b, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, bb, "pointwise b");
    if (t) link(b, op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t, "pointwise t");
    link(b, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y, "pointwise y");
    fin(b, op, "pointwise op");
    ops[(*n)++] = op;
}

static void matmul(builder *b, cudnnBackendDescriptor_t *ops, int *n, cudnnBackendDescriptor_t a,
                   cudnnBackendDescriptor_t bb, cudnnBackendDescriptor_t c) {
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t mm = mk(b, CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    set(b, mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32, "matmul compute type");
    fin(b, mm, "matmul");
    cudnnBackendDescriptor_t op = mk(b, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    link(b, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, a, "matmul a");
    link(b, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, bb, "matmul b");
    link(b, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, c, "matmul c");
    link(b, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, mm, "matmul desc");
    fin(b, op, "matmul op");
    ops[(*n)++] = op;
}

static void reduction(builder *b, cudnnBackendDescriptor_t *ops, int *n, cudnnReduceTensorOp_t mode,
                      cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t rd = mk(b, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    set(b, rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode, "reduction mode");
    set(b, rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32, "reduction compute type");
    fin(b, rd, "reduction");
    cudnnBackendDescriptor_t op = mk(b, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    link(b, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd, "reduction desc");
    link(b, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x, "reduction x");
    link(b, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y, "reduction y");
    fin(b, op, "reduction op");
    ops[(*n)++] = op;
}

static void reshape(builder *b, cudnnBackendDescriptor_t *ops, int *n, cudnnBackendDescriptor_t x,
                    cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t op = mk(b, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    link(b, op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x, "reshape x");
    link(b, op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y, "reshape y");
    fin(b, op, "reshape op");
    ops[(*n)++] = op;
}

// scores (virtual f32, [B, H, T, T]) -> the same with the keys a query does not see set to -inf: those
// after it (top-left causal), and with seg (our seg_start, int32 [B, 1, T, 1], broadcast over heads and
// keys) those before its segment's first position, so packed rows need no ragged layout.
static cudnnBackendDescriptor_t causal(builder *b, cudnnBackendDescriptor_t *ops, int *n, cudnnBackendDescriptor_t s,
                                       cudnnBackendDescriptor_t neg_inf, cudnnBackendDescriptor_t seg, shape sc) {
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT, i32 = CUDNN_DATA_INT32, b8 = CUDNN_DATA_BOOLEAN;
    cudnnBackendDescriptor_t row = V_(b, i32, sc), col = V_(b, i32, sc), keep = V_(b, b8, sc), out = V_(b, f32, sc);
    pointwise(b, ops, n, CUDNN_POINTWISE_GEN_INDEX, f32, s, NULL, NULL, row, 2);
    pointwise(b, ops, n, CUDNN_POINTWISE_GEN_INDEX, f32, s, NULL, NULL, col, 3);
    pointwise(b, ops, n, CUDNN_POINTWISE_CMP_GE, b8, row, col, NULL, keep, -1);
    if (seg) {
        cudnnBackendDescriptor_t in_seg = V_(b, b8, sc), both = V_(b, b8, sc);
        pointwise(b, ops, n, CUDNN_POINTWISE_CMP_GE, b8, col, seg, NULL, in_seg, -1);
        pointwise(b, ops, n, CUDNN_POINTWISE_LOGICAL_AND, b8, keep, in_seg, NULL, both, -1);
        keep = both;
    }
    pointwise(b, ops, n, CUDNN_POINTWISE_BINARY_SELECT, f32, s, neg_inf, keep, out, -1);
    return out;
}

// Our seg_start (B, T) as a [B, 1, T, 1] tensor, or NULL without segments.
static cudnnBackendDescriptor_t seg_tensor(builder *b, bool seg, int64_t B, int64_t T) {
    return seg ? T_(b, U_SEG, CUDNN_DATA_INT32, shape_of(B, 1, T, 1, T, T, 1, 1)) : NULL;
}

static int build_fwd(builder *b, cudnnBackendDescriptor_t *ops, cudnnDataType_t t, bool seg, int64_t B, int64_t T,
                     int64_t H, int64_t KV, int64_t hd) {
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    const shape sc = scores(B, H, T), rw = rows(B, H, T), one = scalar();
    int n = 0;
    cudnnBackendDescriptor_t q = T_(b, U_Q, t, bshd(B, H, T, hd)), kt = T_(b, U_K, t, bshd_t(B, KV, T, hd)),
                             v = T_(b, U_V, t, bshd(B, KV, T, hd)), o = T_(b, U_O, t, bshd(B, H, T, hd)),
                             stats = T_(b, U_STATS, f32, rw);
    cudnnBackendDescriptor_t scale = tensor(b, U_SCALE, f32, one.dim, one.stride, true),
                             neg_inf = tensor(b, U_NEGINF, f32, one.dim, one.stride, true);
    cudnnBackendDescriptor_t s = V_(b, f32, sc), ss = V_(b, f32, sc);
    matmul(b, ops, &n, q, kt, s);
    pointwise(b, ops, &n, CUDNN_POINTWISE_MUL, f32, s, scale, NULL, ss, -1);
    cudnnBackendDescriptor_t sm = causal(b, ops, &n, ss, neg_inf, seg_tensor(b, seg, B, T), sc);
    cudnnBackendDescriptor_t mx = V_(b, f32, rw), d = V_(b, f32, sc), e = V_(b, f32, sc), z = V_(b, f32, rw),
                             lz = V_(b, f32, rw), p = V_(b, t, sc);
    reduction(b, ops, &n, CUDNN_REDUCE_TENSOR_MAX, sm, mx);
    pointwise(b, ops, &n, CUDNN_POINTWISE_SUB, f32, sm, mx, NULL, d, -1);
    pointwise(b, ops, &n, CUDNN_POINTWISE_EXP, f32, d, NULL, NULL, e, -1);
    reduction(b, ops, &n, CUDNN_REDUCE_TENSOR_ADD, e, z);
    pointwise(b, ops, &n, CUDNN_POINTWISE_LOG, f32, z, NULL, NULL, lz, -1);
    pointwise(b, ops, &n, CUDNN_POINTWISE_ADD, f32, mx, lz, NULL, stats, -1);
    pointwise(b, ops, &n, CUDNN_POINTWISE_DIV, f32, e, z, NULL, p, -1);
    matmul(b, ops, &n, p, v, o);
    return n;
}

// dst (B, KV, T, hd) 16-bit <- per query head (virtual) values summed over each group, or straight.
static void to_kv(builder *b, cudnnBackendDescriptor_t *ops, int *n, cudnnDataType_t t, cudnnBackendDescriptor_t a,
                  cudnnBackendDescriptor_t bb, int64_t uid, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    cudnnBackendDescriptor_t dst = T_(b, uid, t, bshd(B, KV, T, hd));
    if (H == KV) { matmul(b, ops, n, a, bb, dst); return; }
    cudnnBackendDescriptor_t full = V_(b, t, bhsd(B, H, T, hd));
    matmul(b, ops, n, a, bb, full);
    reduction(b, ops, n, CUDNN_REDUCE_TENSOR_ADD, full, dst);
}

static int build_bwd(builder *b, cudnnBackendDescriptor_t *ops, cudnnDataType_t t, bool seg, int64_t B, int64_t T,
                     int64_t H, int64_t KV, int64_t hd) {
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    const shape sc = scores(B, H, T), sct = scores_t(B, H, T), rw = rows(B, H, T), one = scalar();
    int n = 0;
    cudnnBackendDescriptor_t q = T_(b, U_Q, t, bshd(B, H, T, hd)), kt = T_(b, U_K, t, bshd_t(B, KV, T, hd)),
                             vt = T_(b, U_V, t, bshd_t(B, KV, T, hd)), o = T_(b, U_O, t, bshd(B, H, T, hd)),
                             dout = T_(b, U_DO, t, bshd(B, H, T, hd)), stats = T_(b, U_STATS, f32, rw),
                             sum = T_(b, U_SUM, f32, rw);
    cudnnBackendDescriptor_t scale = tensor(b, U_SCALE, f32, one.dim, one.stride, true),
                             neg_inf = tensor(b, U_NEGINF, f32, one.dim, one.stride, true),
                             unit = tensor(b, U_ONE, f32, one.dim, one.stride, true);
    // D = rowsum(dO * O), kept (non-virtual) for the fused kernel's second pass
    cudnnBackendDescriptor_t doo = V_(b, f32, bhsd(B, H, T, hd)), dsum = V_(b, f32, rw);
    pointwise(b, ops, &n, CUDNN_POINTWISE_MUL, f32, dout, o, NULL, doo, -1);
    reduction(b, ops, &n, CUDNN_REDUCE_TENSOR_ADD, doo, dsum);
    pointwise(b, ops, &n, CUDNN_POINTWISE_MUL, f32, dsum, unit, NULL, sum, -1);
    // P = exp(S * scale - Stats) under the mask
    cudnnBackendDescriptor_t s = V_(b, f32, sc), ss = V_(b, f32, sc), sd = V_(b, f32, sc), p = V_(b, f32, sc);
    matmul(b, ops, &n, q, kt, s);
    pointwise(b, ops, &n, CUDNN_POINTWISE_MUL, f32, s, scale, NULL, ss, -1);
    pointwise(b, ops, &n, CUDNN_POINTWISE_SUB, f32, ss, stats, NULL, sd, -1);
    cudnnBackendDescriptor_t sm = causal(b, ops, &n, sd, neg_inf, seg_tensor(b, seg, B, T), sc);
    pointwise(b, ops, &n, CUDNN_POINTWISE_EXP, f32, sm, NULL, NULL, p, -1);
    // dV = P^T dO
    cudnnBackendDescriptor_t pt = V_(b, t, sct);
    reshape(b, ops, &n, p, pt);
    to_kv(b, ops, &n, t, pt, dout, U_DV, B, T, H, KV, hd);
    // dS = P (dO V^T - D) scale
    cudnnBackendDescriptor_t dp = V_(b, f32, sc), dpd = V_(b, f32, sc), dsp = V_(b, f32, sc), ds = V_(b, f32, sc);
    matmul(b, ops, &n, dout, vt, dp);
    pointwise(b, ops, &n, CUDNN_POINTWISE_SUB, f32, dp, sum, NULL, dpd, -1);
    pointwise(b, ops, &n, CUDNN_POINTWISE_MUL, f32, dpd, p, NULL, dsp, -1);
    pointwise(b, ops, &n, CUDNN_POINTWISE_MUL, f32, dsp, scale, NULL, ds, -1);
    // dK = dS^T Q
    cudnnBackendDescriptor_t dst = V_(b, t, sct);
    reshape(b, ops, &n, ds, dst);
    to_kv(b, ops, &n, t, dst, q, U_DK, B, T, H, KV, hd);
    // dQ = dS K: K seen through its own layout again, into the f32 accumulator, and its 16-bit copy
    cudnnBackendDescriptor_t k = V_(b, f32, bshd(B, KV, T, hd)), dqacc = T_(b, U_DQACC, f32, bhsd(B, H, T, hd)),
                             dq = T_(b, U_DQ, t, bshd(B, H, T, hd));
    reshape(b, ops, &n, kt, k);
    matmul(b, ops, &n, ds, k, dqacc);
    pointwise(b, ops, &n, CUDNN_POINTWISE_IDENTITY, f32, dqacc, NULL, NULL, dq, -1);
    return n;
}

// The operation graph of ops, then the first engine configuration of the heuristic (mode A) that gives
// a plan. False when there is none; b->st / b->what say where it stopped.
static bool make_plan(builder *b, cudnnHandle_t h, cudnnBackendDescriptor_t *ops, int nops, cudnnBackendDescriptor_t *plan,
                      int64_t *ws) {
    cudnnBackendDescriptor_t g = mk(b, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    set(b, g, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h, "graph handle");
    set(b, g, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops, "graph ops");
    fin(b, g, "operation graph");
    cudnnBackendDescriptor_t heur = mk(b, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    link(b, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, g, "heuristic graph");
    set(b, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristic mode");
    fin(b, heur, "engine heuristic");
    cudnnBackendDescriptor_t cfgs[MAX_CFGS];
    for (int i = 0; i < MAX_CFGS; i++) cfgs[i] = mk(b, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    if (b->st != CUDNN_STATUS_SUCCESS) return false;
    int64_t found = 0;
    cudnnStatus_t s = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                               MAX_CFGS, &found, cfgs);
    if (s != CUDNN_STATUS_SUCCESS) { b->st = s; b->what = "engine heuristic results"; return false; }
    for (int64_t i = 0; i < found && i < MAX_CFGS; i++) {
        cudnnBackendDescriptor_t p = mk(b, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        set(b, p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h, "plan handle");
        link(b, p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfgs[i], "plan config");
        if (b->st != CUDNN_STATUS_SUCCESS) return false;
        s = cudnnBackendFinalize(p);
        if (s != CUDNN_STATUS_SUCCESS) { b->what = "execution plan (no engine took the graph)"; continue; }
        int64_t got = 0;
        s = cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &got, ws);
        if (s != CUDNN_STATUS_SUCCESS) { b->st = s; b->what = "plan workspace size"; return false; }
        *plan = p;
        return true;
    }
    if (b->st == CUDNN_STATUS_SUCCESS) {
        b->st = CUDNN_STATUS_NOT_SUPPORTED;
        if (!found) b->what = "engine heuristic (no configuration for the graph)";
    }
    return false;
}

// ---- the instance's part ----

// Only the state: the cuDNN handle (which loads the library's engines) is made by the first 16-bit
// attention call, so f32 runs, eval and generate never pay for it.
void dt_cuda_sdpa_init(dt_cuda_state *st) { st->sdpa = (struct dt_cuda_sdpa *)calloc(1, sizeof *st->sdpa); }

const char *dt_backend_cuda_attention_note(void) {
    struct dt_cuda_sdpa *d = dt_cuda()->sdpa;
    if (!d) return "hand-written flash kernel";
    const size_t v = cudnnGetVersion();
    int n = snprintf(d->note, sizeof d->note, "cuDNN %zu.%zu.%zu fused flash attention %lld calls, hand-written flash "
                     "kernel %lld", v / 10000, v % 10000 / 100, v % 100, d->on_dnn, d->on_hand);
    if (d->on_hand && d->hand_why && n > 0 && (size_t)n < sizeof d->note)
        n += snprintf(d->note + n, sizeof d->note - (size_t)n, " (last: %s%s%s)", d->hand_why,
                      d->no_plan[0] ? "; " : "", d->no_plan);
    if (d->off && n > 0 && (size_t)n < sizeof d->note)
        snprintf(d->note + n, sizeof d->note - (size_t)n, "; cuDNN attention off: %s", d->off_why);
    return d->note;
}

static void turn_off(struct dt_cuda_sdpa *d, const char *why) {
    d->off = true;
    snprintf(d->off_why, sizeof d->off_why, "%s", why);
}

// A 16-bit call goes to the hand kernel, for this reason.
static bool to_hand(struct dt_cuda_sdpa *d, const char *why) {
    d->on_hand++;
    d->hand_why = why;
    return false;
}

// The handle, made on first use; false (and cuDNN attention off, saying why) when it cannot be.
static bool handle(struct dt_cuda_sdpa *d) {
    if (d->h) return true;
    cudnnStatus_t s = cudnnCreate(&d->h);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetStream(d->h, dt_cuda_stream());
    if (s == CUDNN_STATUS_SUCCESS) return true;
    if (d->h) cudnnDestroy(d->h);
    d->h = NULL;
    char why[160];
    snprintf(why, sizeof why, "cudnnCreate: %s", cudnnGetErrorString(s));
    turn_off(d, why);
    return false;
}

// The cached plan for this call's shape, built on first use; NULL when cuDNN has none (then the shape is
// remembered as refused in an entry with plan NULL, so it is not rebuilt every call).
static sdpa_plan *get_plan(struct dt_cuda_sdpa *d, bool bwd, bool seg, cudnnDataType_t t, int64_t B, int64_t T,
                           int64_t H, int64_t KV, int64_t hd) {
    sdpa_plan *lru = &d->plans[0];
    for (int i = 0; i < PLAN_CACHE; i++) {
        sdpa_plan *p = &d->plans[i];
        if (p->used && p->bwd == bwd && p->seg == seg && p->type == t && p->B == B && p->T == T && p->H == H && p->KV == KV && p->hd == hd) {
            p->last = ++d->clock;
            return p->plan ? p : NULL;
        }
        if (!p->used || (lru->used && p->last < lru->last)) lru = p;
    }
    if (lru->used) release(&lru->keep);
    memset(lru, 0, sizeof *lru);
    lru->used = true;
    lru->bwd = bwd;
    lru->seg = seg;
    lru->type = t;
    lru->B = B, lru->T = T, lru->H = H, lru->KV = KV, lru->hd = hd;
    lru->last = ++d->clock;
    builder *b = &lru->keep;
    b->next_uid = U_VIRTUAL;
    cudnnBackendDescriptor_t ops[48];
    int n = bwd ? build_bwd(b, ops, t, seg, B, T, H, KV, hd) : build_fwd(b, ops, t, seg, B, T, H, KV, hd);
    if (b->st != CUDNN_STATUS_SUCCESS || !make_plan(b, d->h, ops, n, &lru->plan, &lru->ws)) {
        // Not an error: this shape runs on the hand-written kernel. Say so once per shape.
        snprintf(d->no_plan, sizeof d->no_plan, "%s%s B=%lld T=%lld H=%lld KV=%lld hd=%lld: %s: %s",
                 bwd ? "backward" : "forward", seg ? " with segments" : "", (long long)B, (long long)T, (long long)H, (long long)KV, (long long)hd,
                 b->what ? b->what : "?", cudnnGetErrorString(b->st));
        release(b);
        lru->plan = NULL;
        return NULL;
    }
    return lru;
}

// True when every row of seg_start (device, (B, T)) is one segment: the mask is then plain causal.
static bool one_segment(struct dt_cuda_sdpa *d, const int32_t *seg_start, int64_t B, int64_t T) {
    if (!seg_start) return true;
    const size_t n = (size_t)(B * T);
    if (n > d->seg_cap) {
        int32_t *p = (int32_t *)realloc(d->seg_host, n * sizeof *p);
        if (!p) return false;
        d->seg_host = p;
        d->seg_cap = n;
    }
    const cudaStream_t s = dt_cuda_stream();
    if (!CU_OK(cudaMemcpyAsync(d->seg_host, seg_start, n * sizeof(int32_t), cudaMemcpyDeviceToHost, s)) ||
        !CU_OK(cudaStreamSynchronize(s)))
        return false;
    for (size_t i = 0; i < n; i++)
        if (d->seg_host[i] != 0) return false;
    return true;
}

// The plan for a call: with segments (seg_start given) the graph with the segment mask; if cuDNN has no
// plan for that one, the plain causal graph serves rows of one segment (seg_start all zero) and packed
// rows go to the hand kernel. NULL (counted, with the reason) when the hand kernel must run.
static sdpa_plan *pick_plan(struct dt_cuda_sdpa *d, bool bwd, cudnnDataType_t t, const int32_t *seg_start, int64_t B,
                            int64_t T, int64_t H, int64_t KV, int64_t hd) {
    sdpa_plan *p = seg_start ? get_plan(d, bwd, true, t, B, T, H, KV, hd) : NULL;
    if (p) return p;
    if (!one_segment(d, seg_start, B, T)) {
        to_hand(d, "packed rows, and no cuDNN plan with the segment mask");
        return NULL;
    }
    if (!(p = get_plan(d, bwd, false, t, B, T, H, KV, hd))) to_hand(d, "no cuDNN plan for the shape");
    return p;
}

// The plan for a 16-bit table's call (is_bf16: its type), or NULL when the hand kernel runs it: the f32
// table (not counted), cuDNN off or unavailable, a head size its fused kernels do not take (multiples of
// 8 up to 256; 128 on some GPUs gets no plan), or no plan (pick_plan).
static sdpa_plan *start(const dt_backend *be, struct dt_cuda_sdpa *d, bool bwd, const int32_t *seg_start, int64_t B,
                        int64_t T, int64_t H, int64_t KV, int64_t hd, bool *is_bf16) {
    const cudaDataType_t gt = dt_cuda_gemm_type(be);
    if (!d || gt == CUDA_R_32F) return NULL;
    if (d->off || !handle(d)) { to_hand(d, "cuDNN attention off"); return NULL; }
    if (hd % 8 || hd > 256) { to_hand(d, "head size"); return NULL; }
    *is_bf16 = gt == CUDA_R_16BF;
    return pick_plan(d, bwd, *is_bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF, seg_start, B, T, H, KV, hd);
}

// The attention scratch of the 16-bit tables.
// The pieces, in order: the row sums D (B, H, T) f32 first (where the hand kernel's backward keeps its
// own D), the f32 dQ accumulator (B, H, T, hd), then q, o, dO, dQ (B, T, H, hd) and k, v, dK, dV
// (B, T, KV, hd) in 16 bits. Each starts on a 256-byte boundary: the graph declares 16-byte alignment,
// and 256 is what cudaMalloc gives.
typedef struct {
    uint16_t *q, *k, *v, *o, *dout, *dq, *dk, *dv;
    float *dqacc, *sum;
} carve;
#define PIECE_ALIGN 256
static size_t piece(size_t bytes) { return (bytes + PIECE_ALIGN - 1) & ~(size_t)(PIECE_ALIGN - 1); }

size_t dt_cuda_sdpa_scratch_bytes(int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const size_t nq = (size_t)(B * T * H * hd), nk = (size_t)(B * T * KV * hd);
    return piece((size_t)(B * H * T) * 4) + piece(nq * 4) + 4 * piece(nq * 2) + 4 * piece(nk * 2);
}

static carve carve_scratch(void *scratch, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const size_t nq = (size_t)(B * T * H * hd), nk = (size_t)(B * T * KV * hd);
    uint8_t *p = (uint8_t *)scratch;
    carve c;
    c.sum = (float *)p, p += piece((size_t)(B * H * T) * 4);
    c.dqacc = (float *)p, p += piece(nq * 4);
    uint16_t **h16[] = {&c.q, &c.o, &c.dout, &c.dq, &c.k, &c.v, &c.dk, &c.dv};
    for (int i = 0; i < 8; i++) {
        *h16[i] = (uint16_t *)p;
        p += piece((i < 4 ? nq : nk) * 2);
    }
    return c;
}

__global__ void widen_acc_k(float *dst, bool acc, const uint16_t *src, int64_t n, bool is_bf16) {
    // dst (n) (+)= src (n) 16-bit
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float x = is_bf16 ? dt_hf_bf16_to_f32(src[i]) : dt_hf_f16_to_f32(src[i]);
        dst[i] = acc ? dst[i] + x : x;
    }
}

__global__ void bhsd_to_bshd_k(float *dst, bool acc, const float *src, int64_t B, int64_t T, int64_t H, int64_t hd) {
    // dst (B, T, H, hd) (+)= src (B, H, T, hd)
    const int64_t n = B * T * H * hd;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t e = i % hd, h = (i / hd) % H, t = (i / (hd * H)) % T, b = i / (hd * H * T);
        const float x = src[((b * H + h) * T + t) * hd + e];
        dst[i] = acc ? dst[i] + x : x;
    }
}

static bool widen(float *dst, bool acc, const uint16_t *src, int64_t n, bool is_bf16) {
    widen_acc_k<<<dt_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(dst, acc, src, n, is_bf16);
    return LAUNCH_OK("widen_acc_k");
}

static bool to_bshd(float *dst, bool acc, const float *src, int64_t B, int64_t T, int64_t H, int64_t hd) {
    bhsd_to_bshd_k<<<dt_cuda_blocks(B * T * H * hd, EW_THREADS), EW_THREADS, 0, dt_cuda_stream()>>>(dst, acc, src, B, T,
                                                                                                    H, hd);
    return LAUNCH_OK("bhsd_to_bshd_k");
}

// Runs plan p with the (uid, pointer) pairs and a workspace from the stream-ordered pool.
// NULL when it ran; else why not (the call then goes to the hand kernel, which needs no workspace: a
// device without room for cuDNN's is not an error).
static const char *execute(struct dt_cuda_sdpa *d, sdpa_plan *p, const int64_t *uids, void **ptrs, int n) {
    void *ws = NULL;
    if (p->ws > 0) {
        cudaError_t e = cudaMallocAsync(&ws, (size_t)p->ws, dt_cuda_stream());
        if (e == cudaErrorMemoryAllocation) {
            (void)cudaGetLastError(); // not sticky, and not this step's error
            return "no device memory for cuDNN's workspace";
        }
        if (!dt_cuda_ok_(e, "cudaMallocAsync (cuDNN workspace)", __FILE__, __LINE__)) return "CUDA error";
    }
    builder b = {};
    cudnnBackendDescriptor_t pack = mk(&b, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    set(&b, pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids, "variant pack uids");
    set(&b, pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs, "variant pack pointers");
    set(&b, pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws, "variant pack workspace");
    fin(&b, pack, "variant pack");
    cudnnStatus_t s = b.st == CUDNN_STATUS_SUCCESS ? cudnnBackendExecute(d->h, p->plan, pack) : b.st;
    release(&b);
    if (ws) CU_OK(cudaFreeAsync(ws, dt_cuda_stream()));
    if (s != CUDNN_STATUS_SUCCESS) {
        char why[160];
        snprintf(why, sizeof why, "cudnnBackendExecute: %s", cudnnGetErrorString(s));
        turn_off(d, why);
        return "cuDNN attention off";
    }
    return NULL;
}

// ---- the first-use check against the hand kernel ----

// sqrt(sum (a - b)^2 / sum b^2) over n device floats (downloaded; once per plan).
static double rel_rms(const float *a, const float *b, int64_t n) {
    float *ha = (float *)malloc((size_t)n * sizeof(float)), *hb = (float *)malloc((size_t)n * sizeof(float));
    double num = 0, den = 0;
    const cudaStream_t s = dt_cuda_stream();
    if (ha && hb && CU_OK(cudaMemcpyAsync(ha, a, (size_t)n * 4, cudaMemcpyDeviceToHost, s)) &&
        CU_OK(cudaMemcpyAsync(hb, b, (size_t)n * 4, cudaMemcpyDeviceToHost, s)) && CU_OK(cudaStreamSynchronize(s))) {
        for (int64_t i = 0; i < n; i++) {
            num += ((double)ha[i] - hb[i]) * ((double)ha[i] - hb[i]);
            den += (double)hb[i] * hb[i];
        }
    } else {
        num = INFINITY;
    }
    free(ha);
    free(hb);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// 16-bit inputs move an attention output by about 2^-8 relative (bf16) and its gradients a few times
// that; a wrong graph (mask, scale, layout) is off by tens of percent. The bound sits between.
#define CHECK_REL 0.08

// Device memory for the check's reference; NULL (not an error: the check waits for a later call) when
// the device has no room.
static void *tmp_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMallocAsync(&p, bytes, dt_cuda_stream());
    if (e == cudaErrorMemoryAllocation) (void)cudaGetLastError();
    else dt_cuda_ok_(e, "cudaMallocAsync (attention check)", __FILE__, __LINE__);
    return e == cudaSuccess ? p : NULL;
}

// 1: agrees, 0: disagrees (cuDNN attention turned off), -1: not checked (no memory for the reference).
static int check_fwd(struct dt_cuda_sdpa *d, const float *out, const float *lse, const float *q, const float *k,
                      const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const int64_t nq = B * T * H * hd, nl = B * H * T;
    float *ro = (float *)tmp_alloc((size_t)nq * 4), *rl = (float *)tmp_alloc((size_t)nl * 4);
    int ok = -1;
    if (ro && rl) {
        dt_cuda_attention_fwd_hand(ro, rl, q, k, v, seg_start, B, T, H, KV, hd);
        const double eo = rel_rms(out, ro, nq), el = rel_rms(lse, rl, nl);
        ok = eo <= CHECK_REL && el <= CHECK_REL;
        if (!ok) {
            char why[200];
            snprintf(why, sizeof why, "its forward disagreed with the hand kernel: relative RMS %.3g (out), %.3g (lse)",
                     eo, el);
            turn_off(d, why);
        }
    }
    if (ro) CU_OK(cudaFreeAsync(ro, dt_cuda_stream()));
    if (rl) CU_OK(cudaFreeAsync(rl, dt_cuda_stream()));
    return ok;
}

bool dt_cuda_sdpa_fwd(const dt_backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                      const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd, void *scratch) {
    struct dt_cuda_sdpa *d = dt_cuda()->sdpa;
    bool is_bf16;
    sdpa_plan *p = start(be, d, false, seg_start, B, T, H, KV, hd, &is_bf16);
    if (!p) return false;
    carve c = carve_scratch(scratch, B, T, H, KV, hd);
    const int64_t nq = B * T * H * hd, nk = B * T * KV * hd;
    if (!dt_cuda_narrow16(c.q, q, nq, is_bf16) || !dt_cuda_narrow16(c.k, k, nk, is_bf16) ||
        !dt_cuda_narrow16(c.v, v, nk, is_bf16))
        return false;
    float scale = 1.0f / sqrtf((float)hd), neg_inf = -INFINITY;
    const int64_t uids[] = {U_Q, U_K, U_V, U_O, U_STATS, U_SCALE, U_NEGINF, U_SEG};
    void *ptrs[] = {c.q, c.k, c.v, c.o, lse, &scale, &neg_inf, (void *)seg_start};
    const char *why = execute(d, p, uids, ptrs, p->seg ? 8 : 7);
    if (why) return to_hand(d, why);
    if (!widen(out, false, c.o, nq, is_bf16)) return false; // recorded
    if (!p->checked) {
        const int c = check_fwd(d, out, lse, q, k, v, seg_start, B, T, H, KV, hd);
        if (c == 0) return to_hand(d, "cuDNN attention off"); // the caller's hand kernel redoes the call
        p->checked = c == 1;
    }
    d->on_dnn++;
    return true;
}

// As check_fwd, on cuDNN's gradients still in the scratch (c), before anything is written to the
// caller's dq, dk, dv: so every plan is checked on its first call whatever the caller accumulates, and a
// disagreement leaves the caller's buffers for the hand kernel.
static int check_bwd(struct dt_cuda_sdpa *d, const carve *c, bool is_bf16, const float *dout, const float *out,
                     const float *lse, const float *q, const float *k, const float *v, const int32_t *seg_start,
                     int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd) {
    const int64_t nq = B * T * H * hd, nk = B * T * KV * hd;
    float *rq = (float *)tmp_alloc((size_t)nq * 4), *rk = (float *)tmp_alloc((size_t)nk * 4),
          *rv = (float *)tmp_alloc((size_t)nk * 4), *rd = (float *)tmp_alloc((size_t)(B * H * T) * 4),
          *tq = (float *)tmp_alloc((size_t)nq * 4), *tk = (float *)tmp_alloc((size_t)nk * 4),
          *tv = (float *)tmp_alloc((size_t)nk * 4);
    int ok = -1;
    if (rq && rk && rv && rd && tq && tk && tv) {
        dt_cuda_attention_bwd_hand(rq, rk, rv, false, false, false, dout, out, lse, q, k, v, seg_start, B, T, H, KV, hd, rd);
        if (to_bshd(tq, false, c->dqacc, B, T, H, hd) && widen(tk, false, c->dk, nk, is_bf16) &&
            widen(tv, false, c->dv, nk, is_bf16)) {
            const double eq = rel_rms(tq, rq, nq), ek = rel_rms(tk, rk, nk), ev = rel_rms(tv, rv, nk);
            ok = eq <= CHECK_REL && ek <= CHECK_REL && ev <= CHECK_REL;
            if (!ok) {
                char why[200];
                snprintf(why, sizeof why,
                         "its backward disagreed with the hand kernel: relative RMS dq %.3g, dk %.3g, dv %.3g", eq, ek, ev);
                turn_off(d, why);
            }
        }
    }
    for (float *x : {rq, rk, rv, rd, tq, tk, tv})
        if (x) CU_OK(cudaFreeAsync(x, dt_cuda_stream()));
    return ok;
}

bool dt_cuda_sdpa_bwd(const dt_backend *be, float *dq, float *dk, float *dv, bool acc_q, bool acc_k, bool acc_v,
                      const float *dout, const float *out, const float *lse, const float *q, const float *k,
                      const float *v, const int32_t *seg_start, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t hd,
                      void *scratch) {
    struct dt_cuda_sdpa *d = dt_cuda()->sdpa;
    bool is_bf16;
    sdpa_plan *p = start(be, d, true, seg_start, B, T, H, KV, hd, &is_bf16);
    if (!p) return false;
    carve c = carve_scratch(scratch, B, T, H, KV, hd);
    const int64_t nq = B * T * H * hd, nk = B * T * KV * hd;
    if (!dt_cuda_narrow16(c.q, q, nq, is_bf16) || !dt_cuda_narrow16(c.k, k, nk, is_bf16) ||
        !dt_cuda_narrow16(c.v, v, nk, is_bf16) || !dt_cuda_narrow16(c.o, out, nq, is_bf16) ||
        !dt_cuda_narrow16(c.dout, dout, nq, is_bf16))
        return false;
    float scale = 1.0f / sqrtf((float)hd), neg_inf = -INFINITY, one = 1.0f;
    const int64_t uids[] = {U_Q, U_K, U_V, U_O, U_DO, U_STATS, U_SUM, U_SCALE, U_NEGINF, U_ONE, U_DQACC, U_DQ, U_DK, U_DV,
                            U_SEG};
    void *ptrs[] = {c.q,  c.k,     c.v,  c.o,  c.dout, (void *)lse, c.sum, &scale, &neg_inf,
                    &one, c.dqacc, c.dq, c.dk, c.dv,   (void *)seg_start};
    const char *why = execute(d, p, uids, ptrs, p->seg ? 15 : 14);
    if (why) return to_hand(d, why);
    if (!p->checked) {
        const int ck = check_bwd(d, &c, is_bf16, dout, out, lse, q, k, v, seg_start, B, T, H, KV, hd);
        if (ck == 0) return to_hand(d, "cuDNN attention off");
        p->checked = ck == 1;
    }
    if ((dq && !to_bshd(dq, acc_q, c.dqacc, B, T, H, hd)) || (dk && !widen(dk, acc_k, c.dk, nk, is_bf16)) ||
        (dv && !widen(dv, acc_v, c.dv, nk, is_bf16)))
        return false;
    d->on_dnn++;
    return true;
}

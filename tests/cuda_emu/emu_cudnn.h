// A CPU stand-in for the part of cuDNN 9's backend (graph) API that autograd/cuda/sdpa_cudnn.cu uses:
// descriptors are attribute stores, finalize checks what each kind needs, heuristics offer one engine
// configuration, and cudnnBackendExecute interprets the operation graph node by node: every tensor,
// virtual or not, is materialised densely in f32 (a 16-bit virtual tensor is rounded to its type,
// as the fused kernel rounds P before P V), then the graph's outputs are written through their
// strides. Ops: matmul (batch dimensions equal, 1, or a query-head count that is a multiple of the
// key/value one: grouped-query attention), pointwise (the modes below) and reduction (MAX, ADD over
// the dimensions the output has as 1, or over groups of heads) and reshape (a view through other
// strides), each input broadcast along its dimensions of size 1.
// It checks that the graph we build means what we meant; it cannot tell whether the real library's
// fused-attention engine accepts it (that is for a GPU run to show).
#ifndef DT_EMU_CUDNN_H
#define DT_EMU_CUDNN_H
#include <stdio.h>
#include <map>
#include <set>
#include <vector>
#include "tests/cuda_emu/emu_cuda.h"

#define CUDNN_VERSION 91900
typedef enum {
    CUDNN_STATUS_SUCCESS = 0,
    CUDNN_STATUS_NOT_INITIALIZED = 1001,
    CUDNN_STATUS_BAD_PARAM = 2000,
    CUDNN_STATUS_NOT_SUPPORTED = 3000,
    CUDNN_STATUS_EXECUTION_FAILED = 5000,
} cudnnStatus_t;
typedef enum {
    CUDNN_DATA_FLOAT = 0,
    CUDNN_DATA_HALF = 2,
    CUDNN_DATA_INT32 = 4,
    CUDNN_DATA_BFLOAT16 = 9,
    CUDNN_DATA_INT64 = 10,
    CUDNN_DATA_BOOLEAN = 11,
} cudnnDataType_t;
typedef enum {
    CUDNN_TYPE_HANDLE = 0,
    CUDNN_TYPE_DATA_TYPE = 1,
    CUDNN_TYPE_BOOLEAN = 2,
    CUDNN_TYPE_INT64 = 3,
    CUDNN_TYPE_FLOAT = 4,
    CUDNN_TYPE_DOUBLE = 5,
    CUDNN_TYPE_VOID_PTR = 6,
    CUDNN_TYPE_HEUR_MODE = 8,
    CUDNN_TYPE_POINTWISE_MODE = 14,
    CUDNN_TYPE_BACKEND_DESCRIPTOR = 15,
    CUDNN_TYPE_REDUCTION_OPERATOR_TYPE = 18,
} cudnnBackendAttributeType_t;
typedef enum {
    CUDNN_BACKEND_POINTWISE_DESCRIPTOR = 0,
    CUDNN_BACKEND_ENGINECFG_DESCRIPTOR = 3,
    CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR = 4,
    CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR = 5,
    CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR = 13,
    CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR = 15,
    CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR = 16,
    CUDNN_BACKEND_TENSOR_DESCRIPTOR = 17,
    CUDNN_BACKEND_MATMUL_DESCRIPTOR = 18,
    CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR = 19,
    CUDNN_BACKEND_REDUCTION_DESCRIPTOR = 21,
    CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR = 22,
    CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR = 31,
} cudnnBackendDescriptorType_t;
typedef enum {
    CUDNN_ATTR_POINTWISE_MODE = 0,
    CUDNN_ATTR_POINTWISE_MATH_PREC = 1,
    CUDNN_ATTR_POINTWISE_AXIS = 9,
    CUDNN_ATTR_ENGINEHEUR_MODE = 200,
    CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH = 201,
    CUDNN_ATTR_ENGINEHEUR_RESULTS = 202,
    CUDNN_ATTR_ENGINECFG_ENGINE = 300,
    CUDNN_ATTR_EXECUTION_PLAN_HANDLE = 400,
    CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG = 401,
    CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE = 402,
    CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR = 750,
    CUDNN_ATTR_OPERATION_POINTWISE_XDESC = 751,
    CUDNN_ATTR_OPERATION_POINTWISE_BDESC = 752,
    CUDNN_ATTR_OPERATION_POINTWISE_YDESC = 753,
    CUDNN_ATTR_OPERATION_POINTWISE_TDESC = 758,
    CUDNN_ATTR_OPERATIONGRAPH_HANDLE = 800,
    CUDNN_ATTR_OPERATIONGRAPH_OPS = 801,
    CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT = 900,
    CUDNN_ATTR_TENSOR_DATA_TYPE = 901,
    CUDNN_ATTR_TENSOR_DIMENSIONS = 902,
    CUDNN_ATTR_TENSOR_STRIDES = 903,
    CUDNN_ATTR_TENSOR_UNIQUE_ID = 906,
    CUDNN_ATTR_TENSOR_IS_VIRTUAL = 907,
    CUDNN_ATTR_TENSOR_IS_BY_VALUE = 908,
    CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS = 1000,
    CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS = 1001,
    CUDNN_ATTR_VARIANT_PACK_WORKSPACE = 1003,
    CUDNN_ATTR_MATMUL_COMP_TYPE = 1500,
    CUDNN_ATTR_OPERATION_MATMUL_ADESC = 1520,
    CUDNN_ATTR_OPERATION_MATMUL_BDESC = 1521,
    CUDNN_ATTR_OPERATION_MATMUL_CDESC = 1522,
    CUDNN_ATTR_OPERATION_MATMUL_DESC = 1523,
    CUDNN_ATTR_REDUCTION_OPERATOR = 1600,
    CUDNN_ATTR_REDUCTION_COMP_TYPE = 1601,
    CUDNN_ATTR_OPERATION_REDUCTION_XDESC = 1610,
    CUDNN_ATTR_OPERATION_REDUCTION_YDESC = 1611,
    CUDNN_ATTR_OPERATION_REDUCTION_DESC = 1612,
    CUDNN_ATTR_OPERATION_RESHAPE_XDESC = 2200,
    CUDNN_ATTR_OPERATION_RESHAPE_YDESC = 2201,
} cudnnBackendAttributeName_t;
typedef enum {
    CUDNN_POINTWISE_ADD = 0,
    CUDNN_POINTWISE_MUL = 1,
    CUDNN_POINTWISE_DIV = 6,
    CUDNN_POINTWISE_SUB = 9,
    CUDNN_POINTWISE_EXP = 13,
    CUDNN_POINTWISE_LOG = 15,
    CUDNN_POINTWISE_IDENTITY = 21,
    CUDNN_POINTWISE_CMP_GE = 303,
    CUDNN_POINTWISE_CMP_LE = 305,
    CUDNN_POINTWISE_LOGICAL_AND = 400,
    CUDNN_POINTWISE_GEN_INDEX = 501,
    CUDNN_POINTWISE_BINARY_SELECT = 601,
} cudnnPointwiseMode_t;
typedef enum { CUDNN_REDUCE_TENSOR_ADD = 0, CUDNN_REDUCE_TENSOR_MAX = 3 } cudnnReduceTensorOp_t;
typedef enum { CUDNN_HEUR_MODE_A = 3 } cudnnBackendHeurMode_t;
typedef struct emu_dnn_handle *cudnnHandle_t;
typedef struct emu_dnn_desc *cudnnBackendDescriptor_t;

struct emu_dnn_handle { cudaStream_t stream; };
struct emu_dnn_attr { cudnnBackendAttributeType_t type; int64_t count; std::vector<uint8_t> bytes; };
struct emu_dnn_desc {
    cudnnBackendDescriptorType_t kind;
    bool final = false;
    std::map<int, emu_dnn_attr> attrs;
};

inline size_t emu_dnn_elem_size(cudnnBackendAttributeType_t t) {
    switch (t) {
    case CUDNN_TYPE_HANDLE: case CUDNN_TYPE_VOID_PTR: case CUDNN_TYPE_BACKEND_DESCRIPTOR: return sizeof(void *);
    case CUDNN_TYPE_BOOLEAN: return sizeof(bool);
    case CUDNN_TYPE_INT64: case CUDNN_TYPE_DOUBLE: return 8;
    default: return 4; // enums and float
    }
}

inline size_t cudnnGetVersion(void) { return CUDNN_VERSION; }
inline const char *cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    default: return "CUDNN_STATUS_EXECUTION_FAILED";
    }
}
inline cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
    if (getenv("EMU_NO_CUDNN")) return CUDNN_STATUS_NOT_INITIALIZED; // a machine without the library's engines
    *h = new emu_dnn_handle{nullptr};
    return CUDNN_STATUS_SUCCESS;
}
inline cudnnStatus_t cudnnDestroy(cudnnHandle_t h) { delete h; return CUDNN_STATUS_SUCCESS; }
inline cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s) { h->stream = s; return CUDNN_STATUS_SUCCESS; }
inline cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t k, cudnnBackendDescriptor_t *d) {
    *d = new emu_dnn_desc{k};
    return CUDNN_STATUS_SUCCESS;
}
inline cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t d) { delete d; return CUDNN_STATUS_SUCCESS; }
inline cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                                              cudnnBackendAttributeType_t type, int64_t count, const void *v) {
    if (!d || d->final || count < 0 || (count && !v)) return CUDNN_STATUS_BAD_PARAM;
    emu_dnn_attr a{type, count, std::vector<uint8_t>((size_t)count * emu_dnn_elem_size(type))};
    if (count) memcpy(a.bytes.data(), v, a.bytes.size());
    d->attrs[name] = a;
    return CUDNN_STATUS_SUCCESS;
}

namespace emu_dnn {
inline const emu_dnn_attr *get(const emu_dnn_desc *d, int name, cudnnBackendAttributeType_t t) {
    auto it = d->attrs.find(name);
    return it == d->attrs.end() || it->second.type != t ? nullptr : &it->second;
}
template <class T> inline bool one(const emu_dnn_desc *d, int name, cudnnBackendAttributeType_t t, T *out) {
    const emu_dnn_attr *a = get(d, name, t);
    if (!a || a->count != 1 || a->bytes.size() != sizeof(T)) return false;
    memcpy(out, a->bytes.data(), sizeof(T));
    return true;
}
inline emu_dnn_desc *desc(const emu_dnn_desc *d, int name) {
    emu_dnn_desc *p = nullptr;
    return one(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, &p) ? p : nullptr;
}
inline std::vector<int64_t> ints(const emu_dnn_desc *d, int name) {
    const emu_dnn_attr *a = get(d, name, CUDNN_TYPE_INT64);
    std::vector<int64_t> v;
    if (a) v.assign((const int64_t *)a->bytes.data(), (const int64_t *)a->bytes.data() + a->count);
    return v;
}

struct tensor {
    std::vector<int64_t> dim, stride;
    cudnnDataType_t type;
    int64_t uid = -1, align = 1;
    bool virt = false, by_value = false;
};
inline bool read_tensor(const emu_dnn_desc *d, tensor *t) {
    if (!d || d->kind != CUDNN_BACKEND_TENSOR_DESCRIPTOR || !d->final) return false;
    t->dim = ints(d, CUDNN_ATTR_TENSOR_DIMENSIONS);
    t->stride = ints(d, CUDNN_ATTR_TENSOR_STRIDES);
    one(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &t->type);
    one(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &t->uid);
    one(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &t->virt);
    one(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, &t->by_value);
    one(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &t->align);
    return true;
}
inline int64_t numel(const std::vector<int64_t> &dim) {
    int64_t n = 1;
    for (int64_t x : dim) n *= x;
    return n;
}
inline float round_to(float x, cudnnDataType_t t) {
    if (t == CUDNN_DATA_BFLOAT16) return emu_round16(x, CUBLAS_COMPUTE_32F_FAST_16BF);
    if (t == CUDNN_DATA_HALF) return emu_round16(x, CUBLAS_COMPUTE_32F_FAST_16F);
    if (t == CUDNN_DATA_BOOLEAN) return x != 0.0f;
    if (t == CUDNN_DATA_INT32 || t == CUDNN_DATA_INT64) return truncf(x);
    return x;
}
// The element at offset `at` (in elements) of memory p of type t, widened to float.
inline float load(const void *p, int64_t at, cudnnDataType_t t) {
    switch (t) {
    case CUDNN_DATA_FLOAT: return ((const float *)p)[at];
    case CUDNN_DATA_INT32: return (float)((const int32_t *)p)[at];
    case CUDNN_DATA_INT64: return (float)((const int64_t *)p)[at];
    case CUDNN_DATA_BOOLEAN: return ((const uint8_t *)p)[at] != 0;
    default: {
        uint16_t h = ((const uint16_t *)p)[at];
        if (t == CUDNN_DATA_BFLOAT16) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
        _Float16 x; memcpy(&x, &h, 2); return (float)x;
    }
    }
}
inline void store(void *p, int64_t at, cudnnDataType_t t, float v) {
    switch (t) {
    case CUDNN_DATA_FLOAT: ((float *)p)[at] = v; return;
    case CUDNN_DATA_INT32: ((int32_t *)p)[at] = (int32_t)v; return;
    case CUDNN_DATA_INT64: ((int64_t *)p)[at] = (int64_t)v; return;
    case CUDNN_DATA_BOOLEAN: ((uint8_t *)p)[at] = v != 0.0f; return;
    default: {
        float r = round_to(v, t);
        uint16_t h;
        if (t == CUDNN_DATA_BFLOAT16) { uint32_t u; memcpy(&u, &r, 4); h = (uint16_t)(u >> 16); }
        else { _Float16 x = (_Float16)r; memcpy(&h, &x, 2); }
        ((uint16_t *)p)[at] = h;
    }
    }
}
// Multi-index of the flat row-major position n in dims.
inline void unflatten(int64_t n, const std::vector<int64_t> &dim, int64_t *idx) {
    for (int a = (int)dim.size() - 1; a >= 0; a--) { idx[a] = n % dim[a]; n /= dim[a]; }
}
// The flat position in src dims of the output index idx, broadcasting src's dimensions of size 1.
inline int64_t bcast(const int64_t *idx, const std::vector<int64_t> &src) {
    int64_t at = 0;
    for (size_t a = 0; a < src.size(); a++) at = at * src[a] + (src[a] == 1 ? 0 : idx[a]);
    return at;
}
inline bool bcastable(const std::vector<int64_t> &src, const std::vector<int64_t> &out) {
    if (src.size() != out.size()) return false;
    for (size_t a = 0; a < src.size(); a++)
        if (src[a] != 1 && src[a] != out[a]) return false;
    return true;
}

struct run {
    std::map<const emu_dnn_desc *, std::vector<float>> val;
    std::map<int64_t, void *> ptr;
    // A device tensor's address honours the alignment its descriptor promises (the real kernels
    // vectorise their loads on it); by-value scalars are host values.
    bool aligned(const tensor &t) { return t.by_value || (uintptr_t)ptr[t.uid] % (uintptr_t)t.align == 0; }
    // The values of tensor d: computed (virtual), or read from its variant-pack pointer.
    const std::vector<float> *input(const emu_dnn_desc *d) {
        auto it = val.find(d);
        if (it != val.end()) return &it->second;
        tensor t;
        if (!read_tensor(d, &t) || t.virt || !ptr.count(t.uid) || !aligned(t)) return nullptr;
        std::vector<float> v((size_t)numel(t.dim));
        std::vector<int64_t> idx(t.dim.size());
        for (int64_t n = 0; n < (int64_t)v.size(); n++) {
            unflatten(n, t.dim, idx.data());
            int64_t at = 0;
            for (size_t a = 0; a < idx.size(); a++) at += idx[a] * t.stride[a];
            v[(size_t)n] = load(ptr[t.uid], at, t.type);
        }
        return &(val[d] = v);
    }
    // Keeps the values of output d (rounded to its type) and writes them out when d is not virtual.
    bool output(const emu_dnn_desc *d, std::vector<float> v) {
        tensor t;
        if (!read_tensor(d, &t) || (int64_t)v.size() != numel(t.dim)) return false;
        for (float &x : v) x = round_to(x, t.type);
        if (!t.virt) {
            if (!ptr.count(t.uid) || !aligned(t)) return false;
            std::vector<int64_t> idx(t.dim.size());
            for (int64_t n = 0; n < (int64_t)v.size(); n++) {
                unflatten(n, t.dim, idx.data());
                int64_t at = 0;
                for (size_t a = 0; a < idx.size(); a++) at += idx[a] * t.stride[a];
                store(ptr[t.uid], at, t.type, v[(size_t)n]);
            }
        }
        val[d] = std::move(v);
        return true;
    }
};

inline bool exec_matmul(run &r, const emu_dnn_desc *op) {
    const emu_dnn_desc *da = desc(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC), *db = desc(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC),
                       *dc = desc(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC);
    tensor a, b, c;
    if (!read_tensor(da, &a) || !read_tensor(db, &b) || !read_tensor(dc, &c)) return false;
    const std::vector<float> *va = r.input(da), *vb = r.input(db);
    const size_t n = a.dim.size();
    if (!va || !vb || n < 2 || b.dim.size() != n || c.dim.size() != n) return false;
    const int64_t M = a.dim[n - 2], K = a.dim[n - 1], N = b.dim[n - 1];
    if (b.dim[n - 2] != K || c.dim[n - 2] != M || c.dim[n - 1] != N) return false;
    // Batch index of C mapped into A or B: equal, 1 (broadcast) or grouped (C has a multiple of its count).
    for (size_t x = 0; x + 2 < n; x++)
        for (const tensor *s : {&a, &b})
            if (s->dim[x] != 1 && (c.dim[x] % s->dim[x] != 0)) return false;
    std::vector<float> out((size_t)numel(c.dim));
    std::vector<int64_t> idx(n), ia(n), ib(n);
    for (int64_t e = 0; e < (int64_t)out.size(); e++) {
        unflatten(e, c.dim, idx.data());
        for (size_t x = 0; x + 2 < n; x++) {
            ia[x] = a.dim[x] == 1 ? 0 : idx[x] / (c.dim[x] / a.dim[x]);
            ib[x] = b.dim[x] == 1 ? 0 : idx[x] / (c.dim[x] / b.dim[x]);
        }
        double s = 0;
        for (int64_t k = 0; k < K; k++) {
            ia[n - 2] = idx[n - 2], ia[n - 1] = k, ib[n - 2] = k, ib[n - 1] = idx[n - 1];
            int64_t pa = 0, pb = 0;
            for (size_t x = 0; x < n; x++) { pa = pa * a.dim[x] + ia[x]; pb = pb * b.dim[x] + ib[x]; }
            s += (double)(*va)[(size_t)pa] * (*vb)[(size_t)pb];
        }
        out[(size_t)e] = (float)s;
    }
    return r.output(dc, out);
}

inline bool exec_pointwise(run &r, const emu_dnn_desc *op) {
    const emu_dnn_desc *pw = desc(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR),
                       *dx = desc(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC),
                       *db = desc(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC),
                       *dt = desc(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC),
                       *dy = desc(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC);
    cudnnPointwiseMode_t mode;
    tensor x, b, t, y;
    if (!pw || !one(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode) || !read_tensor(dx, &x) ||
        !read_tensor(dy, &y))
        return false;
    const bool binary = mode != CUDNN_POINTWISE_EXP && mode != CUDNN_POINTWISE_LOG && mode != CUDNN_POINTWISE_IDENTITY &&
                        mode != CUDNN_POINTWISE_GEN_INDEX;
    const bool ternary = mode == CUDNN_POINTWISE_BINARY_SELECT;
    if ((binary && !read_tensor(db, &b)) || (ternary && !read_tensor(dt, &t))) return false;
    if (!bcastable(x.dim, y.dim) || (binary && !bcastable(b.dim, y.dim)) || (ternary && !bcastable(t.dim, y.dim)))
        return false;
    int64_t axis = -1;
    if (mode == CUDNN_POINTWISE_GEN_INDEX &&
        (!one(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, &axis) || axis < 0 || axis >= (int64_t)y.dim.size() ||
         x.dim != y.dim))
        return false;
    const std::vector<float> *vx = mode == CUDNN_POINTWISE_GEN_INDEX ? nullptr : r.input(dx);
    const std::vector<float> *vb = binary ? r.input(db) : nullptr, *vt = ternary ? r.input(dt) : nullptr;
    if ((mode != CUDNN_POINTWISE_GEN_INDEX && !vx) || (binary && !vb) || (ternary && !vt)) return false;
    std::vector<float> out((size_t)numel(y.dim));
    std::vector<int64_t> idx(y.dim.size());
    for (int64_t e = 0; e < (int64_t)out.size(); e++) {
        unflatten(e, y.dim, idx.data());
        const float xv = vx ? (*vx)[(size_t)bcast(idx.data(), x.dim)] : 0.0f;
        const float bv = vb ? (*vb)[(size_t)bcast(idx.data(), b.dim)] : 0.0f;
        float v;
        switch (mode) {
        case CUDNN_POINTWISE_ADD: v = xv + bv; break;
        case CUDNN_POINTWISE_SUB: v = xv - bv; break;
        case CUDNN_POINTWISE_MUL: v = xv * bv; break;
        case CUDNN_POINTWISE_DIV: v = xv / bv; break;
        case CUDNN_POINTWISE_EXP: v = expf(xv); break;
        case CUDNN_POINTWISE_LOG: v = logf(xv); break;
        case CUDNN_POINTWISE_IDENTITY: v = xv; break;
        case CUDNN_POINTWISE_CMP_GE: v = xv >= bv; break;
        case CUDNN_POINTWISE_CMP_LE: v = xv <= bv; break;
        case CUDNN_POINTWISE_LOGICAL_AND: v = xv != 0.0f && bv != 0.0f; break;
        case CUDNN_POINTWISE_GEN_INDEX: v = (float)idx[(size_t)axis]; break;
        case CUDNN_POINTWISE_BINARY_SELECT: v = (*vt)[(size_t)bcast(idx.data(), t.dim)] != 0.0f ? xv : bv; break;
        default: return false;
        }
        out[(size_t)e] = v;
    }
    return r.output(dy, out);
}

inline bool exec_reduction(run &r, const emu_dnn_desc *op) {
    const emu_dnn_desc *rd = desc(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC),
                       *dx = desc(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC),
                       *dy = desc(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC);
    cudnnReduceTensorOp_t mode;
    tensor x, y;
    if (!rd || !one(rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, &mode) ||
        !read_tensor(dx, &x) || !read_tensor(dy, &y) || x.dim.size() != y.dim.size())
        return false;
    // Each output dimension is the input's, 1 (reduced), or a divisor of it: groups of consecutive
    // indices summed (the query heads of one key/value head).
    for (size_t a = 0; a < x.dim.size(); a++)
        if (x.dim[a] % y.dim[a]) return false;
    const std::vector<float> *vx = r.input(dx);
    if (!vx || (mode != CUDNN_REDUCE_TENSOR_ADD && mode != CUDNN_REDUCE_TENSOR_MAX)) return false;
    std::vector<double> acc((size_t)numel(y.dim), mode == CUDNN_REDUCE_TENSOR_MAX ? -INFINITY : 0.0);
    std::vector<int64_t> idx(x.dim.size());
    for (int64_t e = 0; e < (int64_t)vx->size(); e++) {
        unflatten(e, x.dim, idx.data());
        int64_t at = 0;
        for (size_t a = 0; a < x.dim.size(); a++) at = at * y.dim[a] + idx[a] / (x.dim[a] / y.dim[a]);
        double &a = acc[(size_t)at];
        const double v = (*vx)[(size_t)e];
        a = mode == CUDNN_REDUCE_TENSOR_MAX ? (v > a ? v : a) : a + v;
    }
    return r.output(dy, std::vector<float>(acc.begin(), acc.end()));
}

// y is x seen through other dimensions and strides: the element of y at memory offset o (under y's
// strides) is the element of x at the same offset under x's (P^T from P, K from K^T).
inline bool exec_reshape(run &r, const emu_dnn_desc *op) {
    const emu_dnn_desc *dx = desc(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC), *dy = desc(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC);
    tensor x, y;
    if (!read_tensor(dx, &x) || !read_tensor(dy, &y) || numel(x.dim) != numel(y.dim)) return false;
    const std::vector<float> *vx = r.input(dx);
    if (!vx) return false;
    std::map<int64_t, int64_t> at_x; // memory offset -> flat index of x
    std::vector<int64_t> idx(std::max(x.dim.size(), y.dim.size()));
    for (int64_t e = 0; e < numel(x.dim); e++) {
        unflatten(e, x.dim, idx.data());
        int64_t o = 0;
        for (size_t a = 0; a < x.dim.size(); a++) o += idx[a] * x.stride[a];
        if (!at_x.emplace(o, e).second) return false; // x's strides overlap: no view is defined
    }
    std::vector<float> out((size_t)numel(y.dim));
    for (int64_t e = 0; e < (int64_t)out.size(); e++) {
        unflatten(e, y.dim, idx.data());
        int64_t o = 0;
        for (size_t a = 0; a < y.dim.size(); a++) o += idx[a] * y.stride[a];
        auto it = at_x.find(o);
        if (it == at_x.end()) return false;
        out[(size_t)e] = (*vx)[(size_t)it->second];
    }
    return r.output(dy, out);
}

inline std::vector<emu_dnn_desc *> descs(const emu_dnn_desc *d, int name) {
    const emu_dnn_attr *a = get(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR);
    std::vector<emu_dnn_desc *> v;
    if (a) v.assign((emu_dnn_desc *const *)a->bytes.data(), (emu_dnn_desc *const *)a->bytes.data() + a->count);
    return v;
}

// What each kind needs before it can be finalized.
inline bool finalizable(const emu_dnn_desc *d) {
    switch (d->kind) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: {
        tensor t;
        cudnnDataType_t dt;
        int64_t uid;
        t.dim = ints(d, CUDNN_ATTR_TENSOR_DIMENSIONS);
        t.stride = ints(d, CUDNN_ATTR_TENSOR_STRIDES);
        return !t.dim.empty() && t.dim.size() == t.stride.size() && one(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &dt) &&
               one(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &uid);
    }
    case CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR:
        return desc(d, CUDNN_ATTR_OPERATION_MATMUL_ADESC) && desc(d, CUDNN_ATTR_OPERATION_MATMUL_BDESC) &&
               desc(d, CUDNN_ATTR_OPERATION_MATMUL_CDESC) && desc(d, CUDNN_ATTR_OPERATION_MATMUL_DESC);
    case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR:
        return desc(d, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR) && desc(d, CUDNN_ATTR_OPERATION_POINTWISE_XDESC) &&
               desc(d, CUDNN_ATTR_OPERATION_POINTWISE_YDESC);
    case CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR:
        return desc(d, CUDNN_ATTR_OPERATION_REDUCTION_DESC) && desc(d, CUDNN_ATTR_OPERATION_REDUCTION_XDESC) &&
               desc(d, CUDNN_ATTR_OPERATION_REDUCTION_YDESC);
    case CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR:
        return desc(d, CUDNN_ATTR_OPERATION_RESHAPE_XDESC) && desc(d, CUDNN_ATTR_OPERATION_RESHAPE_YDESC);
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: {
        std::vector<emu_dnn_desc *> ops = descs(d, CUDNN_ATTR_OPERATIONGRAPH_OPS);
        cudnnHandle_t h;
        if (ops.empty() || !one(d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &h)) return false;
        for (emu_dnn_desc *o : ops)
            if (!o || !o->final) return false;
        return true;
    }
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
        emu_dnn_desc *g = desc(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
        cudnnBackendHeurMode_t m;
        return g && g->final && one(d, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, &m);
    }
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
        emu_dnn_desc *c = desc(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
        cudnnHandle_t h;
        return c && c->final && one(d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, &h);
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: {
        const emu_dnn_attr *p = get(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR);
        return p && (int64_t)ints(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS).size() == p->count;
    }
    default: return true; // pointwise, matmul and reduction descriptors, engine configurations
    }
}
// An op can run once each of its virtual inputs has been computed.
inline bool ready(run &r, const emu_dnn_desc *op) {
    static const int in_names[] = {CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_ATTR_OPERATION_MATMUL_BDESC,
                                   CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_ATTR_OPERATION_POINTWISE_BDESC,
                                   CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_ATTR_OPERATION_REDUCTION_XDESC,
                                   CUDNN_ATTR_OPERATION_RESHAPE_XDESC};
    for (int name : in_names) {
        const emu_dnn_desc *d = desc(op, name);
        tensor t;
        if (d && read_tensor(d, &t) && t.virt && !r.val.count(d)) return false;
    }
    return true;
}
// The workspace the one engine asks for, so that the caller's workspace path runs.
constexpr int64_t workspace_bytes = 4096;
} // namespace emu_dnn

inline cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t d) {
    if (!d || d->final || !emu_dnn::finalizable(d)) return CUDNN_STATUS_BAD_PARAM;
    d->final = true;
    return CUDNN_STATUS_SUCCESS;
}

inline cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                                              cudnnBackendAttributeType_t type, int64_t requested, int64_t *count,
                                              void *out) {
    if (!d || !d->final) return CUDNN_STATUS_BAD_PARAM;
    if (d->kind == CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR && name == CUDNN_ATTR_ENGINEHEUR_RESULTS &&
        type == CUDNN_TYPE_BACKEND_DESCRIPTOR) {
        // One configuration: the caller created it (an ENGINECFG descriptor); it runs the heuristic's graph.
        if (count) *count = requested >= 1 ? 1 : 0;
        if (requested < 1) return CUDNN_STATUS_SUCCESS;
        emu_dnn_desc *cfg = ((emu_dnn_desc **)out)[0];
        if (!cfg || cfg->kind != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR) return CUDNN_STATUS_BAD_PARAM;
        emu_dnn_desc *g = emu_dnn::desc(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
        cudnnBackendSetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g);
        cfg->final = true;
        return CUDNN_STATUS_SUCCESS;
    }
    if (d->kind == CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR && name == CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE &&
        type == CUDNN_TYPE_INT64 && requested >= 1) {
        *(int64_t *)out = emu_dnn::workspace_bytes;
        if (count) *count = 1;
        return CUDNN_STATUS_SUCCESS;
    }
    return CUDNN_STATUS_NOT_SUPPORTED;
}

inline cudnnStatus_t cudnnBackendExecute(cudnnHandle_t h, cudnnBackendDescriptor_t plan, cudnnBackendDescriptor_t pack) {
    using namespace emu_dnn;
    if (!h || !plan || !plan->final || plan->kind != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR || !pack || !pack->final)
        return CUDNN_STATUS_BAD_PARAM;
    emu_dnn_desc *cfg = desc(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
    emu_dnn_desc *graph = cfg ? desc(cfg, CUDNN_ATTR_ENGINECFG_ENGINE) : nullptr;
    void *ws = nullptr;
    one(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &ws);
    if (!graph || !ws) return CUDNN_STATUS_BAD_PARAM; // the engine asked for a workspace
    run r;
    std::vector<int64_t> uids = ints(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS);
    const emu_dnn_attr *ptrs = get(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR);
    for (size_t i = 0; i < uids.size(); i++) r.ptr[uids[i]] = ((void *const *)ptrs->bytes.data())[i];
    // Runs each op once its virtual inputs exist (the graph's ops may come in any order).
    std::vector<emu_dnn_desc *> ops = descs(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    std::set<emu_dnn_desc *> done;
    for (bool progress = true; progress && done.size() < ops.size();) {
        progress = false;
        for (emu_dnn_desc *op : ops) {
            if (done.count(op) || !ready(r, op)) continue;
            bool ok;
            switch (op->kind) {
            case CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR: ok = exec_matmul(r, op); break;
            case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR: ok = exec_pointwise(r, op); break;
            case CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR: ok = exec_reduction(r, op); break;
            case CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR: ok = exec_reshape(r, op); break;
            default: return CUDNN_STATUS_NOT_SUPPORTED;
            }
            if (!ok) return CUDNN_STATUS_BAD_PARAM;
            done.insert(op);
            progress = true;
        }
    }
    return done.size() == ops.size() ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_BAD_PARAM;
}
#endif

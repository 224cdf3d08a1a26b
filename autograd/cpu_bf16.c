// oneDNN bf16 matmuls (see cpu_bf16.h). Each cache entry is one primitive for one shape, with its own
// stream, memory objects (their data pointers are swapped in per call) and scratchpad (user mode, so
// oneDNN allocates nothing while it runs). Entries are taken under a mutex and marked busy while they
// run: two threads asking for the same shape at once get two entries, so a call never shares memory
// objects with another. The shapes of a training step repeat every step, so the cache stops growing
// after the first; packed sequences give the attention blocks varying widths, hence the cap.
#include "autograd/cpu_bf16.h"
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include "autograd/cpu_kernels.h"

#define MAX_ENTRIES 512

typedef struct {
    int64_t M, N, K, lda, ldb, ldc;
    float alpha;
    bool ta, tb, acc, nested; // nested: called inside an OpenMP parallel region
} mm_key;

typedef struct {
    mm_key key;
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_memory_t a, b, c, sp;
    void *sp_buf;
    float *emu;         // emulated entries: f32 copies of A (M*K) then B (K*N), and no primitive
    uint64_t last_use; // for evicting the least recently used entry when the cache is full
    bool busy;
} mm_entry;

struct dt_bf16_mm {
    dnnl_engine_t engine;
    pthread_mutex_t lock;
    mm_entry *e[MAX_ENTRIES];
    int n;
    uint64_t clock;
    bool emulate;      // no bf16 matmul in oneDNN on this CPU: the products run widened through sgemm
    char msg[256];
};

static bool key_eq(const mm_key *a, const mm_key *b) {
    return a->M == b->M && a->N == b->N && a->K == b->K && a->lda == b->lda && a->ldb == b->ldb &&
           a->ldc == b->ldc && a->alpha == b->alpha && a->ta == b->ta && a->tb == b->tb && a->acc == b->acc &&
           a->nested == b->nested;
}

int dt_bf16_mm_create(dt_ctx *ctx, dt_bf16_mm **out) {
    *out = NULL;
    dt_bf16_mm *e = calloc(1, sizeof *e);
    if (!e) return dt_fail(ctx, DT_ENOMEM, "out of memory");
    if (dnnl_engine_create(&e->engine, dnnl_cpu, 0) != dnnl_success) {
        free(e);
        return dt_fail(ctx, DT_EUNSUPPORTED, "oneDNN: cannot create a CPU engine");
    }
    pthread_mutex_init(&e->lock, NULL);
    // oneDNN 2.x has no bf16 matmul below AVX-512. The commands never pick bf16 there (dt_dtype_resolve),
    // but the tests and benches that build a bf16 backend still run true bf16 products this way.
    e->emulate = !dt_cpu_has_bf16();
    *out = e;
    return DT_OK;
}

static void entry_free(mm_entry *x) {
    if (!x) return;
    if (x->prim) dnnl_primitive_destroy(x->prim);
    if (x->stream) dnnl_stream_destroy(x->stream);
    if (x->a) dnnl_memory_destroy(x->a);
    if (x->b) dnnl_memory_destroy(x->b);
    if (x->c) dnnl_memory_destroy(x->c);
    if (x->sp) dnnl_memory_destroy(x->sp);
    free(x->sp_buf);
    free(x->emu);
    free(x);
}

void dt_bf16_mm_free(dt_bf16_mm *e) {
    if (!e) return;
    for (int i = 0; i < e->n; i++) entry_free(e->e[i]);
    pthread_mutex_destroy(&e->lock);
    dnnl_engine_destroy(e->engine);
    free(e);
}

const char *dt_bf16_mm_error(const dt_bf16_mm *e) { return e->msg; }

void dt_bf16_mm_set_emulated(dt_bf16_mm *e, bool on) {
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < e->n; i++) entry_free(e->e[i]); // entries of the other kind
    e->n = 0;
    e->emulate = on;
    pthread_mutex_unlock(&e->lock);
}

bool dt_bf16_mm_emulated(const dt_bf16_mm *e) { return e->emulate; }

// A (rows, cols) matrix view: row-major with leading dimension ld, or its transpose.
static dnnl_status_t md_2d(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, int64_t ld, bool trans,
                           dnnl_data_type_t dt) {
    dnnl_dims_t dims = {rows, cols}, strides = {trans ? 1 : ld, trans ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

// Builds the primitive and its memory objects for k; NULL (message in e->msg) when oneDNN refuses.
static mm_entry *entry_create(dt_bf16_mm *e, const mm_key *k) {
    mm_entry *x = calloc(1, sizeof *x);
    if (!x) { snprintf(e->msg, sizeof e->msg, "out of memory"); return NULL; }
    x->key = *k;
    if (e->emulate) { // the f32 copies only; sized for this shape, so a step allocates nothing after the first
        x->emu = malloc(sizeof *x->emu * (size_t)(k->M * k->K + k->K * k->N));
        if (!x->emu) { snprintf(e->msg, sizeof e->msg, "out of memory"); free(x); return NULL; }
        return x;
    }
    dnnl_memory_desc_t amd, bmd, cmd;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    const char *step = "memory descriptors";
    dnnl_status_t st = md_2d(&amd, k->M, k->K, k->lda, k->ta, dnnl_bf16);
    if (st == dnnl_success) st = md_2d(&bmd, k->K, k->N, k->ldb, k->tb, dnnl_bf16);
    if (st == dnnl_success) st = md_2d(&cmd, k->M, k->N, k->ldc, false, dnnl_f32);
    if (st == dnnl_success) { step = "matmul descriptor"; st = dnnl_matmul_desc_init(&desc, &amd, &bmd, NULL, &cmd); }
    if (st == dnnl_success) { step = "attributes"; st = dnnl_primitive_attr_create(&attr); }
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && k->alpha != 1.0f) st = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    if (st == dnnl_success && k->acc) { // C = alpha A B + C: a sum post-op, applied after the scale
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (st == dnnl_success) { step = "primitive descriptor"; st = dnnl_primitive_desc_create(&pd, &desc, attr, e->engine, NULL); }
    if (st == dnnl_success) { step = "primitive"; st = dnnl_primitive_create(&x->prim, pd); }
    if (st == dnnl_success) { step = "stream"; st = dnnl_stream_create(&x->stream, e->engine, dnnl_stream_default_flags); }
    if (st == dnnl_success) {
        step = "memory";
        st = dnnl_memory_create(&x->a, &amd, e->engine, DNNL_MEMORY_NONE);
        if (st == dnnl_success) st = dnnl_memory_create(&x->b, &bmd, e->engine, DNNL_MEMORY_NONE);
        if (st == dnnl_success) st = dnnl_memory_create(&x->c, &cmd, e->engine, DNNL_MEMORY_NONE);
    }
    if (st == dnnl_success) {
        step = "scratchpad";
        const dnnl_memory_desc_t *spmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        size_t bytes = spmd ? dnnl_memory_desc_get_size(spmd) : 0;
        if (bytes) {
            x->sp_buf = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
            st = x->sp_buf ? dnnl_memory_create(&x->sp, spmd, e->engine, x->sp_buf) : dnnl_out_of_memory;
        }
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) {
        snprintf(e->msg, sizeof e->msg, "oneDNN bf16 matmul (%lld x %lld x %lld): %s failed with status %d",
                 (long long)k->M, (long long)k->N, (long long)k->K, step, (int)st);
        entry_free(x);
        return NULL;
    }
    return x;
}

// An idle entry for k, created when none is (the least recently used idle one makes room when full).
static mm_entry *acquire(dt_bf16_mm *e, const mm_key *k) {
    pthread_mutex_lock(&e->lock);
    mm_entry *x = NULL;
    for (int i = 0; i < e->n && !x; i++)
        if (!e->e[i]->busy && key_eq(&e->e[i]->key, k)) x = e->e[i];
    if (!x) {
        int slot = e->n;
        if (slot == MAX_ENTRIES) {
            slot = -1;
            for (int i = 0; i < e->n; i++)
                if (!e->e[i]->busy && (slot < 0 || e->e[i]->last_use < e->e[slot]->last_use)) slot = i;
        }
        // Created under the lock: only the first step creates, and creation must not race the array.
        x = slot >= 0 ? entry_create(e, k) : NULL;
        if (x) {
            if (slot < e->n) entry_free(e->e[slot]);
            else e->n++;
            e->e[slot] = x;
        } else if (slot < 0) {
            snprintf(e->msg, sizeof e->msg, "oneDNN bf16 matmul: all %d cached primitives are busy", MAX_ENTRIES);
        }
    }
    if (x) { x->busy = true; x->last_use = ++e->clock; }
    pthread_mutex_unlock(&e->lock);
    return x;
}

// dense (rows, cols) f32 = the bf16 matrix src (rows, cols), rows ld apart.
static void widen_2d(float *dense, const uint16_t *src, int64_t rows, int64_t cols, int64_t ld) {
    for (int64_t r = 0; r < rows; r++) dt_cpu_bf16_to_f32(dense + r * cols, src + r * ld, cols);
}

// The bf16 products of dt_bf16_matmul without bf16 units: A and B widened exactly to f32 (in w: M*K
// then K*N floats), then sgemm, which accumulates in f32 as oneDNN's bf16 kernels do. Inside an
// OpenMP region OpenBLAS runs on the calling thread.
static void emulated_matmul(float *w, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                            const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, bool acc, float *C,
                            int64_t ldc) {
    float *a = w, *b = w + M * K; // a: op(A) stored as A is, (K, M) when ta else (M, K); b likewise (N, K) or (K, N)
    widen_2d(a, A, ta ? K : M, ta ? M : K, lda);
    widen_2d(b, B, tb ? N : K, tb ? K : N, ldb);
    dt_cpu_gemm(ta, tb, M, N, K, alpha, a, ta ? M : K, b, tb ? K : N, acc ? 1.0f : 0.0f, C, ldc);
}

int dt_bf16_matmul(dt_bf16_mm *e, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t *A,
                   int64_t lda, const uint16_t *B, int64_t ldb, bool acc, float *C, int64_t ldc) {
    if (M == 0 || N == 0) return DT_OK;
    if (K == 0) { // oneDNN rejects empty reductions; the product is zero
        for (int64_t i = 0; i < M && !acc; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return DT_OK;
    }
    mm_key k = {M, N, K, lda, ldb, ldc, alpha, ta, tb, acc, omp_in_parallel() != 0};
    mm_entry *x = acquire(e, &k);
    if (!x) return DT_EUNSUPPORTED;
    dnnl_status_t st = dnnl_success;
    if (x->emu) {
        emulated_matmul(x->emu, ta, tb, M, N, K, alpha, A, lda, B, ldb, acc, C, ldc);
    } else {
        dnnl_memory_set_data_handle(x->a, (void *)A);
        dnnl_memory_set_data_handle(x->b, (void *)B);
        dnnl_memory_set_data_handle(x->c, C);
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, x->a}, {DNNL_ARG_WEIGHTS, x->b}, {DNNL_ARG_DST, x->c},
                                   {DNNL_ARG_SCRATCHPAD, x->sp}};
        st = dnnl_primitive_execute(x->prim, x->stream, x->sp ? 4 : 3, args);
        if (st == dnnl_success) st = dnnl_stream_wait(x->stream);
    }
    pthread_mutex_lock(&e->lock);
    x->busy = false;
    if (st != dnnl_success)
        snprintf(e->msg, sizeof e->msg, "oneDNN bf16 matmul (%lld x %lld x %lld) failed with status %d",
                 (long long)M, (long long)N, (long long)K, (int)st);
    pthread_mutex_unlock(&e->lock);
    return st == dnnl_success ? DT_OK : DT_EUNSUPPORTED;
}

static inline float bf16_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void dt_bf16_matmul_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t *A,
                          int64_t lda, const uint16_t *B, int64_t ldb, bool acc, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t p = 0; p < K; p++)
                s += (double)bf16_f32(ta ? A[p * lda + i] : A[i * lda + p]) *
                     (double)bf16_f32(tb ? B[j * ldb + p] : B[p * ldb + j]);
            C[i * ldc + j] = (float)(alpha * s + (acc ? C[i * ldc + j] : 0.0));
        }
}

// On 2 cores the conversion of an activation is memory-bound, well under the matmul that reads it.
void dt_cpu_f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    const int64_t chunk = 1 << 14;
    #pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i += chunk) dt_f32_to_bf16_row(dst + i, src + i, n - i < chunk ? n - i : chunk);
}

// One thread's share of dt_cpu_f32_to_bf16_stream: the rounding of dt_f32_to_bf16_row, 16 values
// at a time, stored with non-temporal stores from the first 32-byte boundary of dst on.
static void f32_to_bf16_stream_row(uint16_t *dst, const float *src, int64_t n) {
#ifdef __AVX2__
    int64_t head = (int64_t)(((32 - ((uintptr_t)dst & 31)) & 31) / 2);
    if (((uintptr_t)dst & 1) || head > n) head = n; // never aligned, or too short: all plain
    dt_f32_to_bf16_row(dst, src, head);
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), abs = _mm256_set1_epi32(0x7fffffff);
    const __m256i inf = _mm256_set1_epi32(0x7f800000), quiet = _mm256_set1_epi32(0x40);
    int64_t i = head;
    for (; i + 16 <= n; i += 16) {
        __m256i h[2];
        for (int k = 0; k < 2; k++) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(src + i + 8 * k));
            __m256i r = _mm256_srli_epi32(
                _mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(_mm256_srli_epi32(u, 16), one)), 16);
            __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
            __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), inf); // |u| > inf as signed ints
            h[k] = _mm256_blendv_epi8(r, nan, is_nan);
        }
        // packus interleaves the 128-bit lanes (a0-3 b0-3 a4-7 b4-7): the permute puts them in order.
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(h[0], h[1]), 0xD8);
        _mm256_stream_si256((__m256i *)(dst + i), packed);
    }
    dt_f32_to_bf16_row(dst + i, src + i, n - i);
    _mm_sfence(); // streamed stores are weakly ordered: this thread's are visible before the region ends
#else
    dt_f32_to_bf16_row(dst, src, n);
#endif
}

// The values kept for the backward are written once and read a whole forward later: streaming them
// past the cache saves reading each destination line first. Measured on the SmolLM2-135M bf16 step
// (88.5M values kept a step, 2 cores of an AMD EPYC): 23 ms a step against 31-33 ms with plain stores.
void dt_cpu_f32_to_bf16_stream(uint16_t *dst, const float *src, int64_t n) {
    const int64_t chunk = 1 << 14;
    #pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i += chunk) f32_to_bf16_stream_row(dst + i, src + i, n - i < chunk ? n - i : chunk);
}

void dt_cpu_bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    #pragma omp parallel for simd schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, sizeof u);
    }
}

const char *dt_onednn_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_sse41: return "sse41";
    default: return "unknown";
    }
}

bool dt_cpu_has_bf16(void) {
    // The ISA values nest as bit sets: AMX includes every bit of avx512_core_bf16.
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return (isa & bf16) == bf16;
}

void dt_onednn_version(char *buf, size_t n) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, n, "%d.%d.%d", v->major, v->minor, v->patch);
}

// GGUF (llama.cpp's model file format): shared type tables and a validating, memory-mapped reader.
//
// Layout (all little-endian; "str" is a u64 byte length then the bytes, no NUL):
//   "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
//   n_kv x   { str key | i32 value type | value }   (an array value is i32 elem type | u64 n | n elems)
//   n_tensors x { str name | u32 n_dims | n_dims x i64 ne | i32 ggml type | u64 offset }
//   zero padding to the alignment (general.alignment, u32, default 32)
//   data section: each tensor at its offset (relative to the section, a multiple of the alignment),
//   zero padding after each tensor up to the next multiple of the alignment.
// ne[] is in ggml order: ne[0] is the length of a row (the fastest-varying index), i.e. the
// reverse of the row-major shape: a PyTorch weight of shape (out, in) has ne = {in, out}.
#ifndef DT_GGUF_H
#define DT_GGUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "autograd/tensor.h"

#define DT_GGUF_MAGIC "GGUF"
#define DT_GGUF_VERSION 3
#define DT_GGUF_DEFAULT_ALIGNMENT 32
#define DT_GGUF_MAX_DIMS 4
// llama.cpp stores names in char[GGML_MAX_NAME = 64] and refuses longer ones when loading.
#define DT_GGUF_MAX_NAME 63

// Metadata value types (i32 on disk).
typedef enum {
    DT_GGUF_U8 = 0, DT_GGUF_I8 = 1, DT_GGUF_U16 = 2, DT_GGUF_I16 = 3, DT_GGUF_U32 = 4, DT_GGUF_I32 = 5,
    DT_GGUF_F32 = 6, DT_GGUF_BOOL = 7, DT_GGUF_STRING = 8, DT_GGUF_ARRAY = 9, DT_GGUF_U64 = 10,
    DT_GGUF_I64 = 11, DT_GGUF_F64 = 12,
    DT_GGUF_TYPE_COUNT
} dt_gguf_type;

// The ggml tensor types we write; the reader knows the block sizes of all current ggml types.
enum { DT_GGML_F32 = 0, DT_GGML_F16 = 1, DT_GGML_BF16 = 30 };

// Size in bytes of one scalar of a metadata type; 0 for STRING, ARRAY and unknown types.
size_t dt_gguf_type_size(dt_gguf_type t);
const char *dt_gguf_type_name(dt_gguf_type t); // "u8", ..., "?" when unknown
// ggml tensor types: name ("F32", "Q4_K", ...) and layout. Returns false for an unknown or removed type.
bool dt_ggml_type_info(uint32_t type, const char **name, int64_t *block_elems, size_t *block_bytes);
// Byte size of a tensor of this type and ggml shape (ne[0] must be a multiple of the block size);
// false when the type is unknown, ne[0] does not fill whole blocks, or the size overflows.
bool dt_ggml_nbytes(uint32_t type, int n_dims, const int64_t *ne, size_t *out);
// ggml type for a dt dtype (F32/F16/BF16), -1 for others; dt_ggml_from_dtype_any also maps the
// quantized types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K). dt_ggml_to_dtype: back, for all of
// those (false for any other ggml type).
int dt_ggml_from_dtype(dt_dtype t);
int dt_ggml_from_dtype_any(dt_dtype t);
bool dt_ggml_to_dtype(uint32_t ggml_type, dt_dtype *out);

typedef struct dt_gguf_kv {
    const char *key;
    dt_gguf_type type;      // DT_GGUF_ARRAY for arrays
    dt_gguf_type arr_type;  // element type when type == ARRAY, else == type
    uint64_t n;             // number of elements (1 for a scalar)
    const void *data;       // numeric/bool values, little-endian, in the mapping (maybe unaligned)
    const char *const *strs;     // STRING values as NUL-terminated copies (NULL for other types)
    const uint64_t *str_lens;    // their byte lengths (a GGUF string may contain NUL bytes)
} dt_gguf_kv;

typedef struct dt_gguf_tensor {
    const char *name;
    int n_dims;
    int64_t ne[DT_GGUF_MAX_DIMS]; // ggml order, unused dims are 1
    uint32_t type;                // ggml type
    uint64_t offset;              // relative to the data section
    size_t nbytes;
    const void *data;             // in the mapping
} dt_gguf_tensor;

typedef struct dt_gguf_file {
    char *path;
    const uint8_t *map;  // the whole file, read-only
    size_t size;
    uint32_t version;
    size_t alignment;
    uint64_t data_offset;    // start of the data section in the file
    uint64_t header_end;     // end of the tensor infos (before the padding)
    int64_t n_kv;
    dt_gguf_kv *kvs;
    int64_t n_tensors;
    dt_gguf_tensor *tensors; // in file order
    void *arena_;            // owns the names and string copies
} dt_gguf_file;

// Maps and validates the whole file. Every error names the file and the key or tensor.
// An unknown tensor type is DT_EINPUT ("unsupported type N for tensor X"); quantized types are
// accepted and sized (for inspection); F32/F16/BF16 and the ggml types of autograd/quant.h can become
// dt_tensor views.
int dt_gguf_open(dt_ctx *ctx, const char *path, dt_gguf_file **out);
void dt_gguf_close(dt_gguf_file *f);

// Index of a key, or -1.
int64_t dt_gguf_find_key(const dt_gguf_file *f, const char *key);
const dt_gguf_tensor *dt_gguf_find_tensor(const dt_gguf_file *f, const char *name);

// Element i of a numeric/bool value as integer or double (any integer/float type converts); 0 when
// i >= kv->n or the key holds strings, so no caller can read past a value of an unexpected type.
int64_t dt_gguf_kv_int(const dt_gguf_kv *kv, uint64_t i);
uint64_t dt_gguf_kv_uint(const dt_gguf_kv *kv, uint64_t i);
double dt_gguf_kv_float(const dt_gguf_kv *kv, uint64_t i);
// Typed getters for scalar keys; DT_EINPUT naming file and key when missing or of the wrong type.
int dt_gguf_get_int(dt_ctx *ctx, const dt_gguf_file *f, const char *key, int64_t *out);   // any integer type
int dt_gguf_get_float(dt_ctx *ctx, const dt_gguf_file *f, const char *key, double *out);  // f32 or f64
int dt_gguf_get_bool(dt_ctx *ctx, const dt_gguf_file *f, const char *key, bool *out);
int dt_gguf_get_str(dt_ctx *ctx, const dt_gguf_file *f, const char *key, const char **out);

// Fills a dt_tensor view (row-major shape = reversed ne) of an F32/F16/BF16 or quantized (Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) tensor; DT_EUNSUPPORTED naming file, tensor and type for others.
int dt_gguf_tensor_view(dt_ctx *ctx, const dt_gguf_file *f, const dt_gguf_tensor *t, dt_tensor *out);

// The strict check run on every GGUF we write, on top of everything dt_gguf_open validates:
// version 3; data section at the first aligned offset after the infos; tensors stored in info order,
// each at exactly the previous end rounded up to the alignment (what llama.cpp's loader requires);
// all padding bytes zero; the file ends right after the last tensor's padding.
int dt_gguf_check_spec(dt_ctx *ctx, const char *path);

#endif

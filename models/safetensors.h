// safetensors reader: one file or a sharded model (model.safetensors.index.json), memory-mapped
// read-only. Every header is validated as the format requires (see safetensors.c); every error names
// the file and, where there is one, the tensor.
//
// Data in a safetensors file is not guaranteed to be aligned (the format only pads the header to 8
// bytes when the Python library writes it), so `data` may be unaligned for its dtype: read it with
// memcpy or through dt_st_read_f32 / dt_st_read_as, or check dt_st_aligned before casting.
#ifndef DT_SAFETENSORS_H
#define DT_SAFETENSORS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "autograd/tensor.h"

// The dtypes accepted in a header. F32/F16/BF16 are readable as weights; I32/I64/U8 are accepted so a
// file can be inspected (and U8 for bitsandbytes' 4-bit checkpoints, see bnb4.h), but cannot be read as f32. Any other dtype string is refused (DT_EINPUT).
// DT_ST_BLOCK is no safetensors dtype: a block-quantized tensor of another source (a GGUF file, a
// bitsandbytes checkpoint) handed out as a dt_st_tensor; its dtype names the type (DT_Q4_K, DT_NF4, ...),
// aux its quantization state when it has one outside the blocks.
// U8 holds bitsandbytes' packed 4-bit weights and their state; like I32/I64 it is no float weight.
typedef enum { DT_ST_F32, DT_ST_F16, DT_ST_BF16, DT_ST_I32, DT_ST_I64, DT_ST_U8, DT_ST_BLOCK } dt_st_dtype;
const char *dt_st_dtype_name(dt_st_dtype t); // "F32", "F16", "BF16", "I32", "I64", "U8", "BLOCK"
size_t dt_st_dtype_size(dt_st_dtype t);

typedef struct {
    char *name;
    dt_dtype dtype;        // the library dtype; for an I64 tensor there is none and this holds DT_I32:
                           // check st_dtype first when a tensor may be an integer one
    dt_st_dtype st_dtype;  // the dtype as stored in the file
    int ndim;              // 0 (a scalar) .. DT_MAX_DIMS
    int64_t shape[DT_MAX_DIMS]; // unused dims are 1
    const void *data;      // into the read-only mapping; possibly unaligned; NULL when nbytes == 0
    size_t nbytes;
    int shard;             // index into the shard list (dt_st_shard_path)
    const void *aux;       // DT_ST_BLOCK: per-tensor quantization state (dt_nf4_state), else NULL
} dt_st_tensor;

typedef struct dt_safetensors dt_safetensors; // all shards of one model, mapped

// path: a .safetensors file, a model.safetensors.index.json (any path ending in .json is read as an
// index), or a folder holding model.safetensors or model.safetensors.index.json (the index wins when both
// exist). For an index, every weight_map entry must be found in the shard it names (shards must be plain
// file names beside the index); a tensor present in a shard but not listed is kept, with a dt_warn. Errors: DT_EINPUT for a bad or missing
// file (message names the file and tensor), DT_EIO for a failing system call, DT_ENOMEM.
int dt_st_open(dt_ctx *ctx, const char *path, dt_safetensors **out);
void dt_st_close(dt_safetensors *st); // NULL is fine

size_t dt_st_count(const dt_safetensors *st);
const dt_st_tensor *dt_st_at(const dt_safetensors *st, size_t i);          // shard order, then file order
const dt_st_tensor *dt_st_find(const dt_safetensors *st, const char *name); // NULL when absent
const char *dt_st_metadata(const dt_safetensors *st, const char *key);      // first shard's __metadata__, or NULL
int dt_st_shard_count(const dt_safetensors *st);
const char *dt_st_shard_path(const dt_safetensors *st, int i);
// True when t->data is aligned for its element size, so it may be used in place as a typed array.
bool dt_st_aligned(const dt_st_tensor *t);

// Finds a tensor and checks its shape equals expect_shape (ndim values); DT_EINPUT naming the file and
// the tensor when it is absent or its shape differs ("model.safetensors: tensor 'x': shape [2, 3],
// expected [3, 2]"). expect_shape NULL skips the shape check.
int dt_st_get(dt_ctx *ctx, const dt_safetensors *st, const char *name, int ndim, const int64_t *expect_shape,
              const dt_st_tensor **out);
// Checks t's shape equals expect_shape (ndim values); DT_EINPUT "file: tensor 'name': shape [..], expected
// [..]" otherwise. Shared by every weight source.
int dt_st_check_shape(dt_ctx *ctx, const char *file, const dt_st_tensor *t, int ndim, const int64_t *expect_shape);
// Copies t into dst converted to dst_dtype (F32, F16 or BF16); t must be F32, F16, BF16 or a block type
// (dequantized; DT_EINPUT naming file and tensor otherwise). Handles unaligned source data.
int dt_st_tensor_copy(dt_ctx *ctx, const char *file, const dt_st_tensor *t, dt_dtype dst_dtype, void *dst);
// dt_st_get, then copies the tensor into dst as f32 (converting F16/BF16). I32/I64 are refused.
int dt_st_read_f32(dt_ctx *ctx, const dt_safetensors *st, const char *name, float *dst, int ndim,
                   const int64_t *expect_shape);
// dt_st_get, then copies the tensor into dst converted to dst_dtype (F32, F16 or BF16; same-dtype copies
// are exact). Lets a frozen bf16 weight stay bf16 without a round trip through f32.
int dt_st_read_as(dt_ctx *ctx, const dt_safetensors *st, const char *name, dt_dtype dst_dtype, void *dst,
                  int ndim, const int64_t *expect_shape);

#endif

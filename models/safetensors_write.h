// safetensors writer: collects tensors and metadata, then writes one file atomically (temp + fsync +
// rename) in the layout the Python `safetensors` library produces, so files are byte-identical to
// `safetensors.torch.save_file` for the same tensors and metadata:
//   - tensors laid out sorted by dtype (descending in the library's dtype order, i.e. wider/aligned
//     types first: I64, F32, I32, BF16, F16), then by name (byte order);
//   - header is compact JSON: "__metadata__" first (omitted when no key is set), then each tensor in
//     layout order as {"dtype":..,"shape":[..],"data_offsets":[begin,end]}, strings escaped like serde_json;
//   - the header is padded with spaces to a multiple of 8 bytes.
// The reference keeps metadata in a hash map whose order is random; we sort the keys, so with one key
// (PEFT's and transformers' {"format":"pt"}) the bytes are exactly the reference's. Writing the same
// entries twice produces byte-identical files.
#ifndef DT_SAFETENSORS_WRITE_H
#define DT_SAFETENSORS_WRITE_H
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "autograd/tensor.h"

typedef struct dt_st_writer dt_st_writer;

// Produces a tensor's bytes at write time (nbytes = dtype size x numel) into dst, which the writer owns.
// Lets a merged model be written one tensor at a time without holding all of it in memory.
// Return DT_OK or a dt_fail status.
typedef int (*dt_st_fill_fn)(dt_ctx *ctx, void *user, void *dst, size_t nbytes);

int dt_st_writer_init(dt_ctx *ctx, dt_st_writer **out);
void dt_st_writer_free(dt_st_writer *w); // NULL is fine

// Adds a tensor. dtype: F32, F16, BF16 or I32. ndim 0..DT_MAX_DIMS, dims >= 0. The data pointer is
// borrowed (not copied): it must stay valid until dt_st_writer_write returns. A duplicate name, an
// empty name or a name starting with "__" is DT_EINPUT.
int dt_st_writer_add(dt_ctx *ctx, dt_st_writer *w, const char *name, dt_dtype dtype, int ndim,
                     const int64_t *shape, const void *data);
// Same, but the bytes come from fill(ctx, user, buf, nbytes) when the file is written.
int dt_st_writer_add_fn(dt_ctx *ctx, dt_st_writer *w, const char *name, dt_dtype dtype, int ndim,
                        const int64_t *shape, dt_st_fill_fn fill, void *user);
// Sets (or replaces) a __metadata__ string entry, e.g. ("format", "pt") for PEFT adapters.
int dt_st_writer_set_metadata(dt_ctx *ctx, dt_st_writer *w, const char *key, const char *value);

// Writes one file atomically. Nothing is left at path on failure (an old file there stays intact).
int dt_st_writer_write(dt_ctx *ctx, dt_st_writer *w, const char *path);
// Writes the tensors as shards into folder dir, each at most max_shard_bytes of tensor data (a tensor
// larger than that gets a shard to itself), named like transformers does
// ("model-00001-of-00003.safetensors") plus "model.safetensors.index.json"
// ({"metadata":{"total_size":N},"weight_map":{...}}, names sorted). When everything fits in one shard it
// writes plain "model.safetensors" and no index. Tensors are assigned to shards in the order they were
// added (so a model added layer by layer keeps each layer in one shard); each shard is then laid out as
// dt_st_writer_write does. Every shard carries the writer's metadata.
int dt_st_writer_write_sharded(dt_ctx *ctx, dt_st_writer *w, const char *dir, size_t max_shard_bytes);

#endif

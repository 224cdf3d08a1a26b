// GGUF v3 writer (see models/gguf.h for the layout). Use:
//   dt_gguf_writer_new(ctx, path, &w);
//   dt_gguf_set_str(ctx, w, "general.architecture", "llama"); ...       // metadata, in the order given
//   dt_gguf_add_tensor(ctx, w, "token_embd.weight", DT_GGML_F16, 2, (int64_t[]){vocab, dim}); ...
//   dt_gguf_write_tensor(ctx, w, "token_embd.weight", data); ...        // or chunks, or a callback
//   dt_gguf_writer_finish(ctx, w);                                    // fsync + rename into place
//   dt_gguf_writer_free(w);                                           // always; removes an unfinished file
// Shapes are given row-major (PyTorch order) and stored reversed (ggml order). Tensor data is streamed:
// the header is written when the first data arrives (or at dt_gguf_writer_begin), then each tensor's
// bytes in declaration order, so a merged model never has to fit in memory. The file goes to
// PATH.tmp.XXXXXX and is renamed onto PATH only when complete. The same calls give the same bytes.
#ifndef DT_GGUF_WRITE_H
#define DT_GGUF_WRITE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "autograd/context.h"
#include "models/gguf.h"

typedef struct dt_gguf_writer dt_gguf_writer;

int dt_gguf_writer_new(dt_ctx *ctx, const char *path, dt_gguf_writer **out);
void dt_gguf_writer_free(dt_gguf_writer *w);

// Metadata. Setting a key again replaces its value in place. Keys cannot be changed after the header
// is written. "general.alignment" must be a u32 power of two; the writer then aligns to it.
int dt_gguf_set_scalar(dt_ctx *ctx, dt_gguf_writer *w, const char *key, dt_gguf_type type, const void *value);
int dt_gguf_set_u8(dt_ctx *ctx, dt_gguf_writer *w, const char *key, uint8_t v);
int dt_gguf_set_i8(dt_ctx *ctx, dt_gguf_writer *w, const char *key, int8_t v);
int dt_gguf_set_u16(dt_ctx *ctx, dt_gguf_writer *w, const char *key, uint16_t v);
int dt_gguf_set_i16(dt_ctx *ctx, dt_gguf_writer *w, const char *key, int16_t v);
int dt_gguf_set_u32(dt_ctx *ctx, dt_gguf_writer *w, const char *key, uint32_t v);
int dt_gguf_set_i32(dt_ctx *ctx, dt_gguf_writer *w, const char *key, int32_t v);
int dt_gguf_set_u64(dt_ctx *ctx, dt_gguf_writer *w, const char *key, uint64_t v);
int dt_gguf_set_i64(dt_ctx *ctx, dt_gguf_writer *w, const char *key, int64_t v);
int dt_gguf_set_f32(dt_ctx *ctx, dt_gguf_writer *w, const char *key, float v);
int dt_gguf_set_f64(dt_ctx *ctx, dt_gguf_writer *w, const char *key, double v);
int dt_gguf_set_bool(dt_ctx *ctx, dt_gguf_writer *w, const char *key, bool v);
int dt_gguf_set_str(dt_ctx *ctx, dt_gguf_writer *w, const char *key, const char *v);
// An array of n scalars of type elem (host = little-endian layout; bools as one byte each, 0 or 1).
int dt_gguf_set_arr(dt_ctx *ctx, dt_gguf_writer *w, const char *key, dt_gguf_type elem, const void *data, size_t n);
// An array of n strings; lens may be NULL (then strlen is used).
int dt_gguf_set_arr_str(dt_ctx *ctx, dt_gguf_writer *w, const char *key, const char *const *strs,
                        const size_t *lens, size_t n);
// Copies a key/value pair read by dt_gguf_open (e.g. a base model's metadata into a merged model).
int dt_gguf_set_kv(dt_ctx *ctx, dt_gguf_writer *w, const dt_gguf_kv *kv);
bool dt_gguf_has_key(const dt_gguf_writer *w, const char *key);

// Declares a tensor: ggml type, row-major shape of 1..4 dims. Names are unique and at most 63 bytes.
int dt_gguf_add_tensor(dt_ctx *ctx, dt_gguf_writer *w, const char *name, uint32_t ggml_type, int ndim,
                       const int64_t *shape);
int64_t dt_gguf_writer_n_tensors(const dt_gguf_writer *w);

// Writes the header (all keys and tensor infos); later calls do nothing. Called by the data calls.
int dt_gguf_writer_begin(dt_ctx *ctx, dt_gguf_writer *w);
// Appends n bytes of the current tensor's data (tensors are filled in declaration order; a chunk may
// not cross into the next tensor). Padding is written when a tensor is complete.
int dt_gguf_write_data(dt_ctx *ctx, dt_gguf_writer *w, const void *data, size_t n);
// Writes all the data of the next tensor, which must be `name` (a check on the caller's order).
int dt_gguf_write_tensor(dt_ctx *ctx, dt_gguf_writer *w, const char *name, const void *data);
// Name and byte size of the tensor whose data comes next; NULL when all are written.
const char *dt_gguf_writer_next_tensor(const dt_gguf_writer *w, size_t *nbytes);
// Calls fill once for each tensor still to be written, in order; fill writes exactly nbytes of it with
// dt_gguf_write_data (in as many chunks as it likes) and returns a status.
typedef int (*dt_gguf_fill_fn)(void *user, dt_ctx *ctx, dt_gguf_writer *w, const char *name, size_t nbytes);
int dt_gguf_write_tensors(dt_ctx *ctx, dt_gguf_writer *w, dt_gguf_fill_fn fill, void *user);
// Checks that every tensor was written, then fsyncs and renames the file into place.
int dt_gguf_writer_finish(dt_ctx *ctx, dt_gguf_writer *w);

#endif

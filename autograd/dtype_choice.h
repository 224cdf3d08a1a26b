// Which dtype the frozen weights get: hardware.dtype in recipes, --dtype on eval and generate.
#ifndef DT_DTYPE_CHOICE_H
#define DT_DTYPE_CHOICE_H
#include <stdbool.h>
#include <stddef.h>
#include "autograd/context.h"
#include "autograd/tensor.h"

// "auto": bf16 where the device runs it at matrix-unit speed, stored elsewhere (see dt_dtype_resolve).
#define DT_DTYPE_AUTO ((dt_dtype)-1)
// "stored" (CPU only): each matrix kept in the file's own float type when that is bf16 or f16 (mapped in
// place, never widened as a whole), f32 otherwise; computed in f32, the 16-bit rows widened exactly a
// panel at a time. The same numbers as f32 (exact widening; only the order of the sums may differ) in
// half the memory, at the same training speed and a faster decode (measured: README, "dtype").
#define DT_DTYPE_STORED ((dt_dtype)-2)

// "auto", "stored", "f32", "bf16" or "f16" -> *out; false (out untouched) for anything else.
bool dt_dtype_choice_parse(const char *s, dt_dtype *out);
// The names dt_dtype_choice_parse accepts, for messages: "auto, stored, f32, bf16 or f16".
const char *dt_dtype_choice_names(void);
// "auto", "stored" or dt_dtype_name(t).
const char *dt_dtype_choice_name(dt_dtype t);

// The dtype to keep the frozen weights in on dev for a request (DT_DTYPE_AUTO, DT_DTYPE_STORED or a
// float dtype): a float dtype, or DT_DTYPE_STORED on the CPU. auto: bf16 on CUDA; on the CPU bf16 when
// it has bf16 matrix instructions (AMX or AVX512-BF16, as oneDNN sees them), else stored. bf16 asked
// for on a CPU without them is DT_EUNSUPPORTED (the command exits 2), stored on CUDA DT_EINPUT, with a
// message that starts with `what` (the recipe file and key, or the option).
int dt_dtype_resolve(dt_ctx *ctx, dt_dtype requested, dt_device dev, const char *what, dt_dtype *out);

// One line for users on how frozen matrices kept as t are computed on the CPU, e.g. "bf16 (oneDNN
// 2.6.3 bf16 matmul, avx512_core_bf16 kernels, f32 accumulation)". bf16_matmuls: whether they run
// through oneDNN's bf16 matmuls (hardware.dtype bf16) or are widened to f32 (stored). t may be
// DT_DTYPE_STORED, for the choice itself before a file is read.
void dt_dtype_describe(dt_dtype t, bool bf16_matmuls, char *buf, size_t n);

#endif

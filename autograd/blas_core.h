// Which OpenBLAS kernels this CPU should get when OpenBLAS does not recognise it.
#ifndef DT_BLAS_CORE_H
#define DT_BLAS_CORE_H

// OpenBLAS builds with runtime dispatch (Debian's) pick kernels by CPU model and fall back to their
// Prescott (SSE3) kernels for models newer than the release: Debian 12's 0.3.21 does this on Sapphire
// and Emerald Rapids, where sgemm then runs 4-5x slower than with its AVX-512 kernels. OpenBLAS reads
// OPENBLAS_CORETYPE only while it is being loaded, so a program can only fix this by setting it and
// starting again. Returns the core type to set ("SkylakeX" or "Haswell", chosen from what the CPU and
// the OS support), or NULL when nothing is to be done: OpenBLAS recognised the CPU, the user set
// OPENBLAS_CORETYPE themselves, or the CPU has neither AVX-512 nor AVX2+FMA.
const char *dt_blas_better_coretype(void);

#endif

// Stand-in for the cuBLAS header: see tests/cuda_emu/emu_cuda.h.
#include "tests/cuda_emu/emu_cuda.h"

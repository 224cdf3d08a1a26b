// Stand-in for the cuBLASLt header: see tests/cuda_emu/emu_cuda.h.
#include "tests/cuda_emu/emu_cuda.h"

// Stand-in for the CUDA runtime header: see tests/cuda_emu/emu_cuda.h.
#include "tests/cuda_emu/emu_cuda.h"

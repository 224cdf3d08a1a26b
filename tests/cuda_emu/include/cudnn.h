// Stand-in for the cuDNN header: see tests/cuda_emu/emu_cudnn.h.
#include "tests/cuda_emu/emu_cudnn.h"

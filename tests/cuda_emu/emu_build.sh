#!/bin/sh
# Builds tests/test_cuda_ops.c against the CPU emulation of CUDA (tests/cuda_emu/emu_cuda.h) and runs it:
# the backend's own .cu sources, with only their <<<...>>> launches and the dynamic shared-memory
# declaration rewritten, compiled by g++ as C++20. For checking the kernels on a machine without a GPU.
# Usage (from the repository root): sh tests/cuda_emu/emu_build.sh [asan|tsan]    (default asan)
set -e
mode=${1:-asan}
case $mode in
asan) san="-fsanitize=address,undefined -fno-omit-frame-pointer" ;;
tsan) san="-fsanitize=thread" ;;
*) echo "usage: $0 [asan|tsan]" >&2; exit 2 ;;
esac
out=build-emu-$mode
mkdir -p "$out/src"
make -s BUILD="$out/cpu" CFLAGS="-O1 -g -march=x86-64-v3 $san" "$out/cpu/libdeltatune.a"
objs=
for f in autograd/cuda/*.cu; do
    src="$out/src/$(basename "$f" .cu).cpp"
    python3 - "$f" "$src" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
s = s.replace("extern __shared__ float sm[];", "float *sm = emu::dyn_smem();")
s, n = re.subn(r"(\w+)<<<(.*?)>>>\(", r"emu::launch(\1, \2)(", s, flags=re.S)
open(sys.argv[2], "w").write('#include "tests/cuda_emu/emu_cuda.h"\n#line 1 "%s"\n' % sys.argv[1] + s)
PY
    g++ -std=c++20 -O1 -g $san -Wall -Wno-unused-function -Wno-unknown-pragmas -Itests/cuda_emu/include -I. \
        -DDT_CUDA=1 -c "$src" -o "${src%.cpp}.o"
    objs="$objs ${src%.cpp}.o"
done
BLAS=/usr/lib/x86_64-linux-gnu/openblas-openmp
cc -std=c11 -D_GNU_SOURCE -O1 -g $san -fopenmp -I. -isystem /usr/include/x86_64-linux-gnu/openblas-openmp -DDT_CUDA=1 \
    -o "$out/test_cuda_ops" tests/test_cuda_ops.c $objs "$out/cpu/libdeltatune.a" \
    -L$BLAS -Wl,-rpath,$BLAS -lopenblas -ljansson -lpcre2-8 -lutf8proc -lyaml -lz -lm -lstdc++ -pthread -fopenmp
OMP_NUM_THREADS=1 "$out/test_cuda_ops"

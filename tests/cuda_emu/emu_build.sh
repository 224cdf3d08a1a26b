#!/bin/sh
# Builds the CUDA backend against the CPU emulation of CUDA (tests/cuda_emu/emu_cuda.h) and runs it:
# the backend's own .cu sources, with only their <<<...>>> launches and the dynamic shared-memory
# declaration rewritten, compiled by g++ as C++20, linked into tests/test_cuda_ops.c and into a whole
# deltatune binary, whose `train` then runs on `hardware.device: cuda` (tests/cuda_emu/train_emu.sh).
# For running the CUDA code on a machine without a GPU.
# Usage (from the repository root): sh tests/cuda_emu/emu_build.sh [ci|asan|tsan]    (default asan)
#   ci:   optimised, no sanitizer: what `make test-cuda-emu` (and so CI) runs
#   asan: AddressSanitizer + UBSan (bounds of device and shared memory); tsan: ThreadSanitizer (barriers);
#         both run every CUDA thread as an OS thread (EMU_THREADS in emu_cuda.h), ci runs them as fibers
set -e
mode=${1:-asan}
case $mode in
ci) san=""; opt="-O2"; emu="" ;;
asan) san="-fsanitize=address,undefined -fno-omit-frame-pointer"; opt="-O1"; emu="-DEMU_THREADS" ;;
tsan) san="-fsanitize=thread"; opt="-O1"; emu="-DEMU_THREADS" ;;
*) echo "usage: $0 [ci|asan|tsan]" >&2; exit 2 ;;
esac
out=build-emu-$mode
mkdir -p "$out/src"
# The library and the tools with DT_CUDA=1, as `make CUDA=1` builds them; the .cu objects come from below.
# Single-process (MPI=0): the emulator stands in for one device.
tools=$(make -s MPI=0 BUILD="$out/cpu" print-tool-objs)
make -s MPI=0 BUILD="$out/cpu" CFLAGS="$opt -g -march=x86-64-v3 -fno-math-errno -DDT_CUDA=1 $san" "$out/cpu/libdeltatune.a" $tools
objs=
for f in autograd/cuda/*.cu; do
    src="$out/src/$(basename "$f" .cu).cpp"
    # perl (always installed on Debian) rather than python, so CI needs nothing beyond build-essential.
    perl -0777 -pe 's/extern __shared__ float sm\[\];/float *sm = emu::dyn_smem();/g;
        s/(\w+)<<<(.*?)>>>\(/emu::launch($1, $2)(/gs;
        $_ = qq{#include "tests/cuda_emu/emu_cuda.h"\n#line 1 "$ARGV"\n} . $_' "$f" >"$src.new"
    # An unchanged translation keeps its date, so its object is not rebuilt.
    if cmp -s "$src.new" "$src"; then rm "$src.new"; else mv "$src.new" "$src"; fi
    # Rebuilt when the translation or any header it can include (ours, the emulator's) is newer.
    if [ ! -e "${src%.cpp}.o" ] || [ "$src" -nt "${src%.cpp}.o" ] ||
        [ -n "$(find autograd optim tests/cuda_emu -name '*.h' -newer "${src%.cpp}.o" | head -1)" ]; then
        g++ -std=c++20 $opt -g $san -ffp-contract=off -Wall -Wno-unused-function -Wno-unknown-pragmas \
            -Itests/cuda_emu/include -I. -DDT_CUDA=1 $emu -c "$src" -o "${src%.cpp}.o"
    fi
    objs="$objs ${src%.cpp}.o"
done
BLAS=/usr/lib/x86_64-linux-gnu/openblas-openmp
LIBS="-L$BLAS -Wl,-rpath,$BLAS -lopenblas -ldnnl -ljansson -lpcre2-8 -lutf8proc -lyaml -lz -lm -lstdc++ -pthread -fopenmp"
CC_FLAGS="-std=c11 -D_GNU_SOURCE $opt -g $san -fopenmp -I. -isystem /usr/include/x86_64-linux-gnu/openblas-openmp -DDT_CUDA=1"
cc $CC_FLAGS -o "$out/test_cuda_ops" tests/test_cuda_ops.c $objs "$out/cpu/libdeltatune.a" $LIBS
cc $CC_FLAGS -o "$out/deltatune" $tools $objs "$out/cpu/libdeltatune.a" $LIBS
status=0
OMP_NUM_THREADS=1 "$out/test_cuda_ops" || status=1
OMP_NUM_THREADS=1 sh tests/cuda_emu/train_emu.sh "$out/deltatune" || status=1
exit $status

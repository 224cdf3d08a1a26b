# deltatune build. `make deps` installs Debian packages; `make` builds libdeltatune.a and deltatune;
# `make test` runs every test (last line: N passed, N failed); `make bench` runs the benchmarks.
CC      ?= cc
CFLAGS  ?= -O2 -march=x86-64-v3 -g -fno-math-errno
# The OpenMP build of OpenBLAS: called inside our own `omp parallel` regions it runs single-threaded
# instead of oversubscribing the cores, and outside them it shares OpenMP's thread pool.
BLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
BLAS_LIB := /usr/lib/x86_64-linux-gnu/openblas-openmp
# -fno-trapping-math: we never enable floating-point traps, and without it GCC will not turn the
# selects of the kernels' `omp simd` loops (dt_expf's range checks) into vector blends.
override CFLAGS += -fno-trapping-math -std=c11 -D_GNU_SOURCE -Wall -Wextra -fopenmp -I. -isystem $(BLAS_INC) -MMD -MP
LDLIBS  := -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -ljansson -lpcre2-8 -lutf8proc -lyaml -lz -lm -fopenmp
BUILD   := build
BIN     ?= deltatune

# Every .c in the library folders goes into the library, so adding a file needs no Makefile edit.
LIB_DIRS := autograd models peft optim datasets recipes
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_SRC := $(wildcard tools/*.c)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(filter-out tests/test_%.c,$(wildcard tests/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT:%.c=$(BUILD)/%.o)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# The GPU backend is optional: `make CUDA=1` adds autograd/cuda/*.cu and links cuBLAS.
ifeq ($(CUDA),1)
NVCC      ?= nvcc
CUDA_HOME ?= /usr/local/cuda
CU_SRC    := $(wildcard autograd/cuda/*.cu)
CU_OBJ    := $(CU_SRC:%.cu=$(BUILD)/%.o)
LIB_OBJ   += $(CU_OBJ)
# override: CFLAGS was set with override above, so a plain += here would be silently ignored.
override CFLAGS += -DDT_CUDA=1 -I$(CUDA_HOME)/include
LDLIBS    += -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
NVFLAGS   ?= -O2 -std=c++17 -I. -MMD -MP -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90 -Xcompiler -fPIC,-Wall
endif

.PHONY: all deps test test-asan test-cuda test-cuda-emu bench bench-cuda golden golden-deps clean demo
all: $(BUILD)/libdeltatune.a $(BIN)

DEB_PKGS := build-essential libopenblas-openmp-dev libjansson-dev libpcre2-dev libutf8proc-dev libyaml-dev zlib1g-dev
deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PKGS)

# Only the golden-file generator needs PyTorch; `make test` reads the committed files.
golden-deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-torch python3-numpy

$(BUILD)/libdeltatune.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BIN): $(TOOL_OBJ) $(BUILD)/libdeltatune.a
	$(CC) $(CFLAGS) -o $@ $(TOOL_OBJ) $(BUILD)/libdeltatune.a $(LDLIBS)

# Objects depend on the Makefile too, so a change of flags rebuilds them.
$(BUILD)/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu Makefile
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT_OBJ) $(BUILD)/libdeltatune.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(BUILD)/libdeltatune.a $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libdeltatune.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdeltatune.a $(LDLIBS)

# The quickstart's model generator (demo/make_demo_model.c); tests/test_docs.c runs the quickstart too.
$(BUILD)/demo/make_demo_model: demo/make_demo_model.c $(BUILD)/libdeltatune.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdeltatune.a $(LDLIBS)

demo: all $(BUILD)/demo/make_demo_model
	@sh demo/run.sh

test: all $(TEST_BIN) $(BUILD)/demo/make_demo_model
	@sh tests/run_tests.sh $(BUILD)/tests

# The corrupt-file and parser tests again under AddressSanitizer + UBSan, in a separate build folder.
test-asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/deltatune CFLAGS="-O1 -g -march=x86-64-v3 -fsanitize=address,undefined -fno-omit-frame-pointer" test

bench: all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done

# The CUDA tests and benchmark need a GPU; without one the CUDA tests print SKIP.
test-cuda:
	$(MAKE) CUDA=1 BUILD=build-cuda BIN=build-cuda/deltatune test
	sh tests/cuda_emu/train_emu.sh build-cuda/deltatune

# Without a GPU: the CUDA backend's own sources through the CPU emulation of CUDA (tests/cuda_emu):
# every kernel against the CPU backend, then `deltatune train` on hardware.device: cuda against the CPU
# (losses, cross-device resume, memory refusal, out of device memory). CI runs it.
test-cuda-emu:
	sh tests/cuda_emu/emu_build.sh ci

bench-cuda:
	$(MAKE) CUDA=1 BUILD=build-cuda BIN=build-cuda/deltatune build-cuda/bench/bench_cuda_step
	./build-cuda/bench/bench_cuda_step

golden:
	OMP_NUM_THREADS=2 /usr/bin/python3 tests/golden/gen_golden.py

clean:
	rm -rf build build-asan build-cuda build-emu-ci build-emu-asan build-emu-tsan deltatune

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

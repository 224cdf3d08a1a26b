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
LDLIBS  := -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -ldnnl -ljansson -lpcre2-8 -lutf8proc -lyaml -lz -lm -fopenmp
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

# MPI is optional: `make MPI=1` (the default when mpicc is installed: Debian's libopenmpi-dev) builds the
# data-parallel trainer (tools/comm_mpi.c); `make MPI=0` builds a single-process deltatune without it.
MPI ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
override CFLAGS += -DDT_MPI=1 $(shell mpicc --showme:compile)
LDLIBS   += $(shell mpicc --showme:link)
else
TOOL_SRC := $(filter-out tools/comm_mpi.c,$(TOOL_SRC))
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
endif

# The GPU backend is optional: `make CUDA=1` adds autograd/cuda/*.cu and links cuBLAS and cuDNN.
ifeq ($(CUDA),1)
NVCC      ?= nvcc
CUDA_HOME ?= /usr/local/cuda
CU_SRC    := $(wildcard autograd/cuda/*.cu)
CU_OBJ    := $(CU_SRC:%.cu=$(BUILD)/%.o)
LIB_OBJ   += $(CU_OBJ)
# override: CFLAGS was set with override above, so a plain += here would be silently ignored.
override CFLAGS += -DDT_CUDA=1 -I$(CUDA_HOME)/include
LDLIBS    += -L$(CUDA_HOME)/lib64 -lcudnn -lcublasLt -lcublas -lcudart -lstdc++
# NCCL (shipped with the CUDA toolkit here) carries the gradients between GPUs of an MPI job (tools/comm_nccl.c).
NCCL      ?= $(if $(and $(filter 1,$(MPI)),$(wildcard $(CUDA_HOME)/include/nccl.h)),1,0)
ifeq ($(NCCL),1)
override CFLAGS += -DDT_NCCL=1
LDLIBS    += -lnccl
endif
NVFLAGS   ?= -O2 -std=c++17 -I. -MMD -MP -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90 -Xcompiler -fPIC,-Wall
endif

ifneq ($(NCCL),1)
TOOL_SRC := $(filter-out tools/comm_nccl.c,$(TOOL_SRC))
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
endif

.PHONY: all deps gguf-client test test-asan test-cuda test-cuda-emu print-tool-objs bench bench-cuda golden golden-deps clean demo fuzz fuzz-build fuzz-smoke
all: $(BUILD)/libdeltatune.a $(BIN)

DEB_PKGS := build-essential libopenblas-openmp-dev libjansson-dev libpcre2-dev libutf8proc-dev libyaml-dev zlib1g-dev \
            libopenmpi-dev openmpi-bin libdnnl-dev clang libomp-14-dev libclang-rt-14-dev strace
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

# The file writers of the llama.cpp client checks (tests/gguf_client/README.md). The checks themselves
# need node-llama-cpp and stay out of make test, but make test builds the writers so they keep linking.
GGUF_CLIENT_BIN := $(patsubst tests/gguf_client/%.c,$(BUILD)/gguf_client/%,$(wildcard tests/gguf_client/*.c))
$(BUILD)/gguf_client/%: tests/gguf_client/%.c $(BUILD)/libdeltatune.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdeltatune.a $(LDLIBS)

gguf-client: $(GGUF_CLIENT_BIN)

demo: all $(BUILD)/demo/make_demo_model
	@sh demo/run.sh

# The data-parallel benchmark drives the trainer's communication layer, which lives with the tools.
DIST_OBJ := $(filter $(BUILD)/tools/comm%.o $(BUILD)/tools/train_dist.o,$(TOOL_OBJ))
$(BUILD)/bench/bench_dist_step: bench/bench_dist_step.c $(DIST_OBJ) $(BUILD)/libdeltatune.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(DIST_OBJ) $(BUILD)/libdeltatune.a $(LDLIBS)

test: all $(TEST_BIN) $(BUILD)/demo/make_demo_model $(GGUF_CLIENT_BIN)
	@sh tests/run_tests.sh $(BUILD)/tests

# The whole suite again under AddressSanitizer + UBSan (undefined behaviour is fatal), in a separate build
# folder, with the normal build's optimisation flags. (The tests that run ./deltatune run the normal binary.)
test-asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/deltatune CFLAGS="-O2 -g -march=x86-64-v3 -fno-math-errno -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" test

# Fuzzing with libFuzzer (Debian's clang): the library again with coverage, ASan and UBSan in build-fuzz,
# one harness per parser (tests/fuzz/fuzz_*.c). `make fuzz FUZZ_SECONDS=N` runs each for N seconds
# (tests/fuzz/run.sh: corpus, dictionary, findings); CI runs `make fuzz-smoke`, a short run of each.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)

fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) CFLAGS="-O1 -g -march=x86-64-v3 -fsanitize=fuzzer-no-link $(FUZZ_SAN)" build-fuzz/libdeltatune.a
	$(MAKE) $(FUZZ_BIN)

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h build-fuzz/libdeltatune.a
	$(FUZZ_CC) -O1 -g -march=x86-64-v3 -std=c11 -D_GNU_SOURCE -I. -isystem $(BLAS_INC) -fsanitize=fuzzer $(FUZZ_SAN) \
	    -o $@ $< build-fuzz/libdeltatune.a $(LDLIBS)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh $(FUZZ_BIN)

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=30

bench: all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done
	@sh bench/bench_bf16.sh $(BUILD)

# The CUDA tests and benchmark need a GPU; without one the CUDA tests print SKIP.
test-cuda:
	$(MAKE) CUDA=1 BUILD=build-cuda BIN=build-cuda/deltatune test
	sh tests/cuda_emu/train_emu.sh build-cuda/deltatune

# Without a GPU: the CUDA backend's own sources through the CPU emulation of CUDA (tests/cuda_emu):
# every kernel against the CPU backend, then `deltatune train` on hardware.device: cuda against the CPU
# (losses, cross-device resume, memory refusal, out of device memory). CI runs it.
test-cuda-emu:
	sh tests/cuda_emu/emu_build.sh ci

# The tool objects of this configuration, for emu_build.sh (which links them with emulated .cu objects).
print-tool-objs:
	@echo $(TOOL_OBJ)

bench-cuda:
	$(MAKE) CUDA=1 BUILD=build-cuda BIN=build-cuda/deltatune build-cuda/bench/bench_cuda_step
	sh bench/bench_cuda.sh ./build-cuda/bench/bench_cuda_step

golden:
	OMP_NUM_THREADS=2 /usr/bin/python3 tests/golden/gen_golden.py

clean:
	rm -rf build build-asan build-cuda build-fuzz build-emu-ci build-emu-asan build-emu-tsan deltatune

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

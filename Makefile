# nmc — build, generate, test.
#
# make            build ./nmc from committed generated/ (no Lua needed); CUDA objects
#                 are added when nvcc is found (NMC_CUDA=0 forces a CPU-only build)
# make gen        regenerate generated/ and docs/reference/ from schema/ (needs lua5.4)
# make check-gen  fail when generated/ or docs/reference/ differ from what make gen gives
# make test       every test: C (Check) suites, shell and Python tests
# make sanitize   the C suites under ASan + UBSan (separate build tree)
# make fuzz       libFuzzer targets for a bounded time (FUZZ_SECONDS)
# make deps       install build and test dependencies (Debian + PyPI); idempotent
#
# Layout: every runtime/*.c except runtime/main.c, every kernels/*.c and every
# generated/*.gen.c go into build/libnmc.a; tests/test_<module>.c is one Check
# binary each; tests/run_*.sh and tests/test_*.py are run by `make test`.

CC      ?= cc
BUILD   ?= build
NVCC    ?= $(shell command -v nvcc 2>/dev/null || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
PYTHON  ?= python3
LUA     ?= lua5.4
NMC_CUDA ?= $(if $(NVCC),1,0)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
OPT     ?= -O2
SAN     ?=
NMC_BIN ?= nmc
CFLAGS  ?= $(OPT) -g
EXTRA_CFLAGS ?=
ALL_CFLAGS = $(CFLAGS) $(SAN) $(EXTRA_CFLAGS) -std=c11 -D_GNU_SOURCE -pthread $(WARN) -Iruntime -Igenerated -Ikernels -MMD -MP $(CUDA_CFLAGS)
LDLIBS  := -lm -lpthread
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -lpthread)

CUDA_HOME ?= /usr/local/cuda
CUDA_ARCHS ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCHS) -Xcompiler -Wall,-Wextra -Iruntime -Ikernels --expt-relaxed-constexpr -MMD -MP
ifeq ($(NMC_CUDA),1)
CUDA_CFLAGS := -DNMC_CUDA=1 -I$(CUDA_HOME)/include
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublasLt -lcublas -lstdc++
CU_SRC  := $(wildcard kernels/*.cu)
ifneq ($(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),)
CUDA_CFLAGS += -DNMC_NCCL=1
CUDA_LIBS += -lnccl
endif
else
CUDA_CFLAGS :=
CUDA_LIBS :=
CU_SRC  :=
endif

# MPI (OpenMPI's mpicc): the "mpi" communicator (runtime/comm_mpi.c); without it that file
# compiles to a stub that reports comm-kind-unavailable. NMC_MPI=0 forces that.
MPICC   ?= $(shell command -v mpicc 2>/dev/null)
NMC_MPI ?= $(if $(MPICC),1,0)
ifeq ($(NMC_MPI),1)
MPI_CFLAGS := -DNMC_MPI=1 $(shell $(MPICC) --showme:compile)
MPI_LIBS := $(shell $(MPICC) --showme:link)
endif
LDLIBS  += $(MPI_LIBS)

LIB_SRC := $(filter-out runtime/main.c,$(wildcard runtime/*.c)) $(wildcard kernels/*.c) $(wildcard generated/*.gen.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# the training benches, built with the tests so they keep compiling (tests/run_bench_smoke.sh
# runs them on the CPU; bench/cpu_train/run.sh and tests/gpu/run.sh are where they measure)
BENCH_BIN := $(BUILD)/bench/bench_cpu_train $(BUILD)/bench/train_bench

.PHONY: all deps gen check-gen test test-c test-sh test-py sanitize fuzz clean bench
all: $(NMC_BIN)

$(NMC_BIN): $(BUILD)/runtime/main.o $(BUILD)/libnmc.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/libnmc.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/runtime/comm_mpi.o: ALL_CFLAGS += $(MPI_CFLAGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(BUILD)/libnmc.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(BUILD)/libnmc.a $(CHECK_LIBS) $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/bench/bench_cpu_train: bench/cpu_train/bench_cpu_train.c bench/dev_profile.h bench/fma_peak.h $(BUILD)/libnmc.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libnmc.a $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/bench/train_bench: bench/gpu/train_bench.c bench/dev_profile.h $(BUILD)/libnmc.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libnmc.a $(LDLIBS) $(CUDA_LIBS)

# ---- dependencies -----------------------------------------------------------
deps:
	sh deps/install.sh

# ---- code generation --------------------------------------------------------
gen:
	$(LUA) codegen/gen.lua --out generated --docs docs/reference

check-gen:
	@sh codegen/check-gen.sh

# ---- tests -------------------------------------------------------------------
test: $(NMC_BIN) $(TEST_BIN) $(BENCH_BIN)
	@NMC_BIN=$(NMC_BIN) sh tests/run-all.sh $(BUILD)

sanitize:
	$(MAKE) BUILD=build-san NMC_BIN=build-san/nmc NMC_CUDA=0 CFLAGS="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

fuzz:
	sh tests/fuzz/run.sh

bench:
	@echo "see bench/README.md"

clean:
	rm -rf build build-san build-fuzz nmc

-include $(patsubst %.o,%.d,$(LIB_OBJ)) $(BUILD)/runtime/main.d $(TEST_BIN:=.d)

# gqac: a compiler from .gqa model descriptions to specialized C.
#
#   make            build/gqac and build/libgqa.a (the runtime)
#   make demo       compile the trained example and generate text with it
#   make test       unit tests, the same under ASan+UBSan, cross-CPU tests, the installed
#                   library through pkg-config, bounded fuzzing
#   make bench      speed against the machine's bandwidth and FMA peak
#   make paper      the GQA paper's uptraining experiment on the fortune model (minutes)
#   make loadtest   gqac serve under load: MHA, GQA and MQA at one KV budget (minutes)
#   make install    PREFIX=/usr/local: gqac, libgqa.a, its headers and gqa.pc
#
# Prerequisites (Debian 12): `make deps` (tools/deps.sh) checks them, and as
# root installs what is missing: gcc flex bison libcjson-dev tcc libtcc-dev
# libmicrohttpd-dev curl, and for the tests clang libcunit1-dev libclang-rt-14-dev pkg-config,
# gcc-{aarch64,arm,riscv64,s390x}-linux-gnu(eabihf), gcc-arm-none-eabi and
# qemu-user.

CC      ?= gcc
CC      := $(if $(filter default,$(origin CC)),gcc,$(CC))
PREFIX  ?= /usr/local
BUILD   ?= build
FUZZ_SECONDS ?= 60
FUZZ_FORMAT_SECONDS ?= 30

WARN    := -std=c99 -Wall -Wextra -Wpedantic -Wshadow -Wundef -Wmissing-declarations -Werror
CFLAGS  ?= -O2 -g
ALL_CFLAGS := $(WARN) -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(CFLAGS) \
              -Icompiler -Itemplates -Iruntime -I$(BUILD)
LDLIBS  := -lm -lcjson

COMPILER_SRC := util.c diag.c front.c sema.c ir.c plan.c emit_c.c emit_weights.c cname.c weights.c run.c \
                cache.c output.c gqa_source.c shard.c
COMPILER_OBJ := $(addprefix $(BUILD)/obj/,$(COMPILER_SRC:.c=.o)) \
                $(BUILD)/obj/parser.o $(BUILD)/obj/lexer.o $(BUILD)/obj/templates.o
# comm_mpi.c and mpi_main.c need MPI: libgqa_mpi.a, below.
MPI_RT_SRC   := runtime/comm_mpi.c runtime/mpi_main.c
RUNTIME_SRC  := $(filter-out $(MPI_RT_SRC),$(wildcard runtime/*.c))
RUNTIME_OBJ  := $(patsubst runtime/%.c,$(BUILD)/obj/rt_%.o,$(RUNTIME_SRC))
# The tensor files' readers and writers, which the fuzzers build from source.
TF_SRC       := runtime/tensorfile.c runtime/gguf.c runtime/safetensors.c runtime/half.c runtime/outfile.c \
                runtime/quant.c
TEMPLATES    := templates/gqa_api.h templates/model.h templates/shape.h templates/parallel.h \
                templates/mathlib.c templates/gqmath.h templates/qdot.c templates/kernels.c \
                templates/attention.c templates/forward.c templates/train.c
EXAMPLES     := $(wildcard examples/*.gqa)

.PHONY: FORCE all demo paper loadtest test check check-mpi check-asan check-cross check-serve check-install fuzz bench bench-build bench-tp install clean deps
all: $(BUILD)/gqac $(BUILD)/libgqa.a

$(BUILD)/obj $(BUILD)/gen:
	@mkdir -p $@

# ---- the compiler ----
$(BUILD)/parser.c $(BUILD)/parser.h &: compiler/parser.y | $(BUILD)/obj
	bison -Wall -Werror -o $(BUILD)/parser.c --header=$(BUILD)/parser.h $<
$(BUILD)/lexer.c $(BUILD)/lexer.h &: compiler/lexer.l | $(BUILD)/obj
	flex -o $(BUILD)/lexer.c --header-file=$(BUILD)/lexer.h $<
$(BUILD)/embed: compiler/embed.c | $(BUILD)/obj
	$(CC) $(WARN) -O1 -o $@ $<
$(BUILD)/templates.c: $(BUILD)/embed $(TEMPLATES)
	$(BUILD)/embed $(TEMPLATES) > $@.tmp && mv $@.tmp $@

# flex's and bison's output is not ours to keep warning-free to the letter
# of -Wpedantic; everything else is.
GENERATED_CFLAGS := $(filter-out -Wpedantic -Wmissing-declarations -Wshadow,$(ALL_CFLAGS)) \
                    -Wno-unused-function -Wno-sign-compare
$(BUILD)/obj/parser.o: $(BUILD)/parser.c $(BUILD)/lexer.h compiler/gqac.h compiler/parse_state.h
	$(CC) $(GENERATED_CFLAGS) -c -o $@ $<
$(BUILD)/obj/lexer.o: $(BUILD)/lexer.c $(BUILD)/parser.h compiler/gqac.h compiler/parse_state.h
	$(CC) $(GENERATED_CFLAGS) -c -o $@ $<
$(BUILD)/obj/templates.o: $(BUILD)/templates.c compiler/gqac.h
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
$(BUILD)/obj/train_cmd.o: runtime/train.h
$(BUILD)/obj/serve.o $(BUILD)/obj/serve_req.o $(BUILD)/obj/serve_http.o: compiler/serve.h runtime/engine.h
$(BUILD)/obj/%.o: compiler/%.c compiler/gqac.h templates/gqa_api.h | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
$(BUILD)/libgqac.a: $(COMPILER_OBJ)
	$(AR) rcs $@ $^
# import.c and export.c read and write through the runtime, and the JIT links libtcc
# (static, not PIC) and libdl: they stay out of libgqac.a, in gqac alone.
# libtcc1.a and tcc's headers: where Debian's tcc put them.
TCC_LIB  ?= $(patsubst %/,%,$(dir $(firstword $(wildcard /usr/lib/*/tcc/libtcc1.a /usr/lib/tcc/libtcc1.a \
                                                         /usr/local/lib/tcc/libtcc1.a))))
GQAC_ONLY := $(addprefix $(BUILD)/obj/,import.o export.o quantize.o jit.o jit_tcc.o jit_cc.o tune.o report.o \
                                  train_cmd.o)
# gqac serve: in gqac alone (the tests that link GQAC_ONLY need no HTTP library).
GQAC_SERVE := $(addprefix $(BUILD)/obj/,serve.o serve_req.o serve_http.o)
JIT_LIBS := -ltcc -ldl -lpthread
$(BUILD)/obj/jit_tcc.o: ALL_CFLAGS += -DGQAC_TCC_LIB='"$(TCC_LIB)"'

# The llvm JIT (optional): built by default where LLVM 14's clang libraries
# and libomp are installed (Debian 12's LLVM; LLVM_CONFIG names another),
# LLVM=1 insists on it, LLVM=0 leaves it out.  clang_front.cpp is C++:
# clang's front end has no C API.
LLVM_CONFIG ?= llvm-config-14
LLVM_DIR    := $(shell $(LLVM_CONFIG) --prefix 2>/dev/null)
LLVM_FOUND  := $(if $(LLVM_DIR),$(and $(wildcard $(LLVM_DIR)/include/clang/CodeGen/CodeGenAction.h),\
                 $(wildcard $(LLVM_DIR)/lib/libclang-cpp.so),$(wildcard $(LLVM_DIR)/lib/libomp.so.5),\
                 $(wildcard $(LLVM_DIR)/lib/clang/*/include/omp.h)))
LLVM        ?= $(if $(LLVM_FOUND),1,0)
ifeq ($(LLVM),1)
ifeq ($(LLVM_FOUND),)
$(error LLVM=1, but LLVM's clang libraries and libomp are not installed: as root, sh tools/deps.sh llvm \
        (Debian: llvm-14-dev libclang-14-dev libclang-cpp14-dev libomp-14-dev))
endif
GQAC_ONLY += $(BUILD)/obj/jit_llvm.o $(BUILD)/obj/clang_front.o
JIT_LIBS  += -L$(LLVM_DIR)/lib -Wl,-rpath,$(LLVM_DIR)/lib -lclang-cpp -lLLVM -lstdc++
$(BUILD)/obj/jit_llvm.o: ALL_CFLAGS += -isystem $(LLVM_DIR)/include -DGQAC_LLVM_OMP='"$(LLVM_DIR)/lib/libomp.so.5"'
$(BUILD)/obj/jit_llvm.o $(BUILD)/obj/clang_front.o: compiler/clang_front.h
$(BUILD)/obj/clang_front.o: compiler/clang_front.cpp compiler/clang_front.h | $(BUILD)/obj
	$(CXX) -std=c++14 -fno-exceptions -fno-rtti -Wall -Wextra -Werror $(CFLAGS) -isystem $(LLVM_DIR)/include \
	    -DGQAC_CLANG_BIN='"$(LLVM_DIR)/bin/clang"' -c -o $@ $<
endif
# jit.o lists the backends: rebuilt when LLVM changes.
$(BUILD)/llvm.flag: FORCE | $(BUILD)/obj
	@echo $(LLVM) | cmp -s - $@ || echo $(LLVM) > $@
$(BUILD)/obj/jit.o: $(BUILD)/llvm.flag
$(BUILD)/obj/jit.o: ALL_CFLAGS += -DGQAC_LLVM=$(LLVM)
# MPI (optional): libgqa_mpi.a (the program of a sharded model under mpirun) and
# gqac run's MPI flags, built by default where Open MPI's mpicc and mpirun are
# (Debian: libopenmpi-dev openmpi-bin); MPI=1 insists, MPI=0 leaves them out.
MPICC       ?= mpicc
MPI_CFLAGS  := $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS    := $(shell $(MPICC) --showme:link 2>/dev/null)
MPI_FOUND   := $(if $(MPI_LIBS),$(shell command -v mpirun 2>/dev/null))
MPI         ?= $(if $(MPI_FOUND),1,0)
ifeq ($(MPI),1)
ifeq ($(MPI_FOUND),)
$(error MPI=1, but Open MPI is not installed: as root, apt-get install libopenmpi-dev openmpi-bin)
endif
MPI_ALL := $(BUILD)/libgqa_mpi.a
# (here, not on all's first line: make reads a rule's prerequisites where it stands)
all: $(MPI_ALL)
# gqac run compiles a rank's program with these (the -I as -isystem: MPI's headers are not ours).
$(BUILD)/obj/run.o: ALL_CFLAGS += -DGQAC_MPI_CFLAGS='"$(patsubst -I%,-isystem %,$(MPI_CFLAGS))"' \
                                  -DGQAC_MPI_LIBS='"$(MPI_LIBS)"'
endif
$(BUILD)/mpi.flag: FORCE | $(BUILD)/obj
	@echo $(MPI) | cmp -s - $@ || echo $(MPI) > $@
$(BUILD)/obj/run.o: $(BUILD)/mpi.flag
$(BUILD)/obj/run.o: ALL_CFLAGS += -DGQAC_MPI=$(MPI)
MPI_RT_OBJ := $(patsubst runtime/%.c,$(BUILD)/obj/rt_%.o,$(MPI_RT_SRC))
$(MPI_RT_OBJ): $(BUILD)/obj/rt_%.o: runtime/%.c runtime/gqr.h runtime/fail.h templates/gqa_api.h | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) $(patsubst -I%,-isystem %,$(MPI_CFLAGS)) -c -o $@ $<
$(BUILD)/libgqa_mpi.a: $(MPI_RT_OBJ)
	rm -f $@ && $(AR) rcs $@ $^
GQAC_LIBS := $(LDLIBS) $(JIT_LIBS) -lmicrohttpd
$(BUILD)/gqac: $(BUILD)/obj/main.o $(GQAC_ONLY) $(GQAC_SERVE) $(BUILD)/libgqac.a $(BUILD)/libgqa.a
	$(CC) $(CFLAGS) -o $@ $^ $(GQAC_LIBS)

# ---- the runtime ----
$(BUILD)/obj/rt_%.o: runtime/%.c runtime/gqr.h runtime/fail.h templates/gqa_api.h | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
# Made afresh: ar keeps the members of sources that no longer exist.
$(BUILD)/libgqa.a: $(RUNTIME_OBJ)
	rm -f $@ && $(AR) rcs $@ $^

# ---- generated code for the tests ----
# Each test model: its C (prefix = stem) and deterministic random weights.
define test_model
$(BUILD)/gen/$(1).c $(BUILD)/gen/$(1).h &: $(2) $(BUILD)/gqac | $(BUILD)/gen
	$(BUILD)/gqac $(2) -o $(BUILD)/gen/$(1).c --prefix $(1) $(3)
$(BUILD)/gen/$(1).bin: $(2) $(BUILD)/gqac | $(BUILD)/gen
	$(BUILD)/gqac weights --random $(2) -o $$@ --seed 7
TEST_MODELS += $(1)
endef
# The whole-model tests: one line each in tests/models.def,
# MODEL(stem, "path.gqa", "gqac flags", ...reference numbers), which
# test_model and test_convert include too.  Read as stem;path;flags, the
# flags' spaces as ~ (so each row is one word; flags hold no commas).
TEST_MODEL_ROWS := $(shell sed -n 's/^MODEL.\([A-Za-z0-9_]*\), *"\([^"]*\)", *"\([^"]*\)".*/\1;\2;\3/p' \
                     tests/models.def | tr ' ' '~')
row_field = $(subst ~, ,$(word $(2),$(subst ;, ,$(1))))
$(foreach r,$(TEST_MODEL_ROWS),$(eval $(call test_model,$(call row_field,$(r),1),$(call row_field,$(r),2),\
    $(call row_field,$(r),3))))

# Tests build with OpenMP so the threaded paths run; the generated code
# must also pass the strictest warnings we can ask of it.
TEST_CFLAGS := $(ALL_CFLAGS) -fopenmp
GEN_CFLAGS  := $(TEST_CFLAGS) -Wmissing-prototypes -Wstrict-prototypes
TEST_LIBS   := -lcunit -lm -lpthread -ldl -lcjson

$(BUILD)/gen_attention: tests/gen_attention.c $(BUILD)/libgqac.a $(BUILD)/libgqa.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/gen/attention_cases.c: $(BUILD)/gen_attention | $(BUILD)/gen
	$(BUILD)/gen_attention > $@.tmp && mv $@.tmp $@
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(GEN_CFLAGS) -Itests -I$(BUILD)/gen -c -o $@ $<

# What every test program shares: tests/testing.h.
TESTING := $(BUILD)/obj/testing.o
$(TESTING): tests/testing.c tests/testing.h | $(BUILD)/obj
	$(CC) $(TEST_CFLAGS) -c -o $@ $<

$(BUILD)/test_kernels: tests/test_kernels.c tests/attention_cases.h $(TEMPLATES) \
                       $(BUILD)/gen/attention_cases.o $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -Itests -o $@ $< $(BUILD)/gen/attention_cases.o $(TESTING) $(BUILD)/libgqa.a $(TEST_LIBS)
$(BUILD)/test_model: tests/test_model.c tests/models.def $(TEST_MODELS:%=$(BUILD)/gen/%.o) \
                     $(TEST_MODELS:%=$(BUILD)/gen/%.bin) $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -I$(BUILD)/gen -o $@ $< $(TEST_MODELS:%=$(BUILD)/gen/%.o) $(TESTING) \
	    $(BUILD)/libgqa.a $(TEST_LIBS)
$(BUILD)/test_convert: tests/test_convert.c tests/models.def $(TEST_MODELS:%=$(BUILD)/gen/%.o) \
                       $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TEST_MODELS:%=$(BUILD)/gen/%.o) $(TESTING) $(BUILD)/libgqa.a \
	    $(TEST_LIBS)
$(BUILD)/test_batch: tests/test_batch.c tests/models.def $(TEST_MODELS:%=$(BUILD)/gen/%.o) \
                     $(TEST_MODELS:%=$(BUILD)/gen/%.bin) $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TEST_MODELS:%=$(BUILD)/gen/%.o) $(TESTING) $(BUILD)/libgqa.a \
	    $(TEST_LIBS)
$(BUILD)/test_front: tests/test_front.c $(BUILD)/libgqac.a $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(BUILD)/libgqac.a $(BUILD)/libgqa.a $(TEST_LIBS)
$(BUILD)/test_runtime: tests/test_runtime.c $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(BUILD)/libgqa.a $(TEST_LIBS)
TOK_SRC := $(addprefix runtime/,pretokenize.c vocab.c tokenize.c tokenizer_load.c)
$(patsubst runtime/%.c,$(BUILD)/obj/rt_%.o,$(TOK_SRC)): runtime/tokenizer.h runtime/tokenizer_int.h \
                                                        runtime/unicode_tables.h
$(BUILD)/test_tokenizer: tests/test_tokenizer.c runtime/tokenizer.h $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(BUILD)/libgqa.a $(TEST_LIBS)
TF_OBJ := $(addprefix $(BUILD)/obj/rt_,tensorfile.o gguf.o safetensors.o half.o checkpoint.o convert.o \
            gguf_tokenizer.o quant.o)
$(TF_OBJ): runtime/tensorfile.h runtime/quant.h
$(BUILD)/test_formats: tests/test_formats.c $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(BUILD)/libgqa.a $(TEST_LIBS)
# A rank's slices against the test's own slicer, on the whole models' generated tables.
SHARD_MODELS := tiny g3bias g6mqa kv_q8 qmix
$(BUILD)/test_shard: tests/test_shard.c $(SHARD_MODELS:%=$(BUILD)/gen/%.o) $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(SHARD_MODELS:%=$(BUILD)/gen/%.o) $(TESTING) $(BUILD)/libgqa.a $(TEST_LIBS)
$(BUILD)/test_quant: tests/test_quant.c runtime/quant.h $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(BUILD)/libgqa.a $(TEST_LIBS)

$(BUILD)/test_jit: tests/test_jit.c $(GQAC_ONLY) $(BUILD)/libgqac.a $(BUILD)/libgqa.a \
                   $(BUILD)/gen/tiny.o $(BUILD)/gen/tiny_mha.o $(BUILD)/gen/tiny.bin $(BUILD)/gen/tiny_mha.bin \
                   $(BUILD)/gen/qmix.o $(BUILD)/gen/qmix.bin $(BUILD)/gen/swa_mix.o $(BUILD)/gen/swa_mix.bin \
                   $(BUILD)/gen/swa_f16.o $(BUILD)/gen/swa_f16.bin $(BUILD)/llvm.flag
	$(CC) $(TEST_CFLAGS) -DGQAC_LLVM=$(LLVM) -I$(BUILD)/gen -o $@ $< $(TESTING) $(BUILD)/gen/tiny.o \
	    $(BUILD)/gen/tiny_mha.o $(BUILD)/gen/qmix.o $(BUILD)/gen/swa_mix.o $(BUILD)/gen/swa_f16.o $(GQAC_ONLY) $(BUILD)/libgqac.a $(BUILD)/libgqa.a $(TEST_LIBS) $(JIT_LIBS)

# Tensor parallelism: ranks as threads over the tcc JIT's code of each rank.
$(BUILD)/test_tp: tests/test_tp.c $(GQAC_ONLY) $(BUILD)/libgqac.a $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(GQAC_ONLY) $(BUILD)/libgqac.a $(BUILD)/libgqa.a $(TEST_LIBS) \
	    $(JIT_LIBS)

$(BUILD)/test_cli: tests/test_cli.c
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(TEST_LIBS)

$(BUILD)/test_trainloop: tests/test_trainloop.c runtime/train.h $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(BUILD)/libgqa.a $(TEST_LIBS)
$(BUILD)/test_engine: tests/test_engine.c runtime/engine.h $(BUILD)/gen/tiny.o $(BUILD)/gen/tiny.bin $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -I$(BUILD)/gen -DGEN_DIR='"$(BUILD)/gen"' -o $@ $< $(BUILD)/gen/tiny.o $(TESTING) \
	    $(BUILD)/libgqa.a $(TEST_LIBS)
$(BUILD)/obj/rt_engine.o $(BUILD)/obj/rt_kvpool.o: runtime/engine.h
$(BUILD)/obj/rt_train.o $(BUILD)/obj/rt_dataset.o: runtime/train.h runtime/tokenizer.h runtime/outfile.h

# the load client (tools/loadtest.c) included whole, its main renamed
$(BUILD)/test_loadtest: tests/test_loadtest.c tools/loadtest.c
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(TEST_LIBS) -lcurl

$(BUILD)/test_quantize: tests/test_quantize.c $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(BUILD)/libgqa.a $(TEST_LIBS)

$(BUILD)/test_serve: tests/test_serve.c $(BUILD)/obj/serve_req.o $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(BUILD)/obj/serve_req.o $(BUILD)/libgqa.a $(TEST_LIBS)
$(BUILD)/test_report: tests/test_report.c $(BUILD)/obj/report.o $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TESTING) $(BUILD)/obj/report.o $(BUILD)/libgqa.a $(TEST_LIBS)

# qdot.c's kernels twice: the host's SIMD path (-march=native where the
# compiler takes it) and the portable C path.
NATIVE := $(shell $(CC) -march=native -E -x c /dev/null > /dev/null 2>&1 && echo -march=native)
$(BUILD)/test_qdot: tests/test_qdot.c templates/qdot.c templates/shape.h $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) $(NATIVE) -o $@ $< $(BUILD)/libgqa.a $(TEST_LIBS)
$(BUILD)/test_qdot_portable: tests/test_qdot.c templates/qdot.c templates/shape.h $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -DGQ_QDOT_PORTABLE=1 -o $@ $< $(BUILD)/libgqa.a $(TEST_LIBS)
# And the SIMD path built by clang, which the llvm JIT and users' builds use: an
# intrinsic's undefined upper half differs between the two compilers.
$(BUILD)/test_qdot_clang: tests/test_qdot.c templates/qdot.c templates/shape.h $(BUILD)/libgqa.a
	clang $(filter-out -fno-var-tracking-assignments,$(TEST_CFLAGS)) $(NATIVE) -o $@ $< $(BUILD)/libgqa.a $(TEST_LIBS)

# The training step's tests: tests/train_models.def names the models
# (tests/models/train/STEM.gqa), each generated with --train.
TRAIN_MODELS := $(shell sed -n 's/^TRAIN(\([A-Za-z0-9_]*\)).*/\1/p' tests/train_models.def)
$(BUILD)/gen/train_%.c $(BUILD)/gen/train_%.h: tests/models/train/%.gqa $(BUILD)/gqac | $(BUILD)/gen
	$(BUILD)/gqac $< --train -o $(BUILD)/gen/train_$*.c --prefix train_$*
.SECONDARY: $(TRAIN_MODELS:%=$(BUILD)/gen/train_%.c) $(TRAIN_MODELS:%=$(BUILD)/gen/train_%.h)
$(BUILD)/test_train: tests/test_train.c tests/train_models.def $(TRAIN_MODELS:%=$(BUILD)/gen/train_%.o) \
                     $(GQAC_ONLY) $(BUILD)/libgqac.a $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -Itests -o $@ $< $(TRAIN_MODELS:%=$(BUILD)/gen/train_%.o) $(TESTING) $(GQAC_ONLY) \
	    $(BUILD)/libgqac.a $(BUILD)/libgqa.a $(TEST_LIBS) $(JIT_LIBS)

# The fortune model's training step against PyTorch's reference values
# (examples/fortune/train_reference.json, tools/train_reference.py).
$(BUILD)/gen/train_fortune.c $(BUILD)/gen/train_fortune.h: examples/fortune.gqa $(BUILD)/gqac | $(BUILD)/gen
	$(BUILD)/gqac $< --train -o $(BUILD)/gen/train_fortune.c --prefix train_fortune
.SECONDARY: $(BUILD)/gen/train_fortune.c $(BUILD)/gen/train_fortune.h
$(BUILD)/test_train_torch: tests/test_train_torch.c $(BUILD)/gen/train_fortune.o $(BUILD)/libgqa.a
	$(CC) $(TEST_CFLAGS) -o $@ $< $(BUILD)/gen/train_fortune.o $(TESTING) $(BUILD)/libgqa.a $(TEST_LIBS)

TESTS := test_front test_kernels test_model test_runtime test_convert test_tokenizer test_formats \
         test_quant test_jit test_report test_cli test_quantize test_qdot test_qdot_portable test_qdot_clang test_train \
         test_trainloop test_train_torch test_batch test_engine test_serve test_loadtest test_shard test_tp
$(TESTS:%=$(BUILD)/%): tests/cunit_run.h tests/testing.h tests/load_model.h $(TESTING)

# The unit tests, in one build flavour (BUILD picks it).
check: $(BUILD)/gqac $(TESTS:%=$(BUILD)/%)
	@set -e; for t in $(TESTS); do \
	    echo "== $$t ($(BUILD))"; \
	    OMP_WAIT_POLICY=passive GQAC=$(BUILD)/gqac GQAC_CACHE=$(BUILD)/run-cache GQAC_CFLAGS="$(RUN_CFLAGS)" \
	        $(BUILD)/$$t; \
	done

# The same tests with AddressSanitizer and UndefinedBehaviorSanitizer.
# -fno-var-tracking-assignments: under UBSan, gcc's tracking of variables
# for the debugger multiplies the compile time of the generated kernels'
# unrolled tiles; line numbers stay for the reports.
SANITIZE := -O1 -g -fno-var-tracking-assignments -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
check-asan:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan CFLAGS="$(SANITIZE)" RUN_CFLAGS="$(SANITIZE)" check

# libFuzzer over the whole front end, seeded from the examples and the
# diagnostic cases; FUZZ_SECONDS bounds it.
FUZZ_SRC := $(COMPILER_SRC:%=compiler/%) $(BUILD)/parser.c $(BUILD)/lexer.c $(BUILD)/templates.c \
            $(TF_SRC)
$(BUILD)/fuzz_front: tests/fuzz_front.c $(FUZZ_SRC) compiler/gqac.h
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Icompiler -Itemplates -Iruntime -I$(BUILD) \
	    -o $@ tests/fuzz_front.c $(FUZZ_SRC) -lcjson -lm
# libFuzzer over the tensor file readers, each seeded with files its writer
# made, over the tokenizers' encode and decode, and over the tokenizer in
# GGUF metadata; FUZZ_FORMAT_SECONDS bounds each.
$(BUILD)/fuzz_gguf $(BUILD)/fuzz_safetensors: $(BUILD)/fuzz_%: tests/fuzz_%.c tests/fuzz_tensors.h \
                                              $(TF_SRC) runtime/tensorfile.h runtime/quant.h \
                                              runtime/fail.h | $(BUILD)/obj
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Itemplates -Iruntime \
	    -o $@ $< $(TF_SRC) -lcjson -lm
$(BUILD)/fuzz_tokenizer: tests/fuzz_tokenizer.c $(TOK_SRC) runtime/tokenizer.h runtime/tokenizer_int.h \
                         runtime/unicode_tables.h runtime/fail.h | $(BUILD)/obj
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c99 \
	    -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iruntime \
	    -o $@ tests/fuzz_tokenizer.c $(TOK_SRC) -lcjson -lm
$(BUILD)/fuzz_gguf_tokenizer: tests/fuzz_gguf_tokenizer.c runtime/gguf_tokenizer.c $(TOK_SRC) \
                              $(TF_SRC) runtime/tokenizer.h runtime/tokenizer_int.h \
                              runtime/tensorfile.h runtime/gqr.h \
                              runtime/unicode_tables.h runtime/fail.h | $(BUILD)/obj
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c99 \
	    -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iruntime -Itemplates \
	    -o $@ tests/fuzz_gguf_tokenizer.c runtime/gguf_tokenizer.c $(TOK_SRC) $(TF_SRC) -lcjson -lm
FUZZ_FORMATS := gguf safetensors tokenizer gguf_tokenizer
fuzz: $(BUILD)/fuzz_front $(FUZZ_FORMATS:%=$(BUILD)/fuzz_%)
	@mkdir -p $(BUILD)/fuzz-corpus
	@echo "fuzzing the front end for $(FUZZ_SECONDS) s (log: $(BUILD)/fuzz.log)"
	@$(BUILD)/fuzz_front -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
	    -dict=tests/fuzz_front.dict -print_final_stats=1 \
	    $(BUILD)/fuzz-corpus examples tests/diag tests/models > $(BUILD)/fuzz.log 2>&1 || \
	    { tail -60 $(BUILD)/fuzz.log; exit 1; }
	@grep -E '^(Done|stat::(number_of_executed_units|new_units_added))' $(BUILD)/fuzz.log
	@for f in $(FUZZ_FORMATS); do \
	    mkdir -p $(BUILD)/fuzz-corpus-$$f; \
	    echo "fuzzing $$f for $(FUZZ_FORMAT_SECONDS) s (log: $(BUILD)/fuzz_$$f.log)"; \
	    $(BUILD)/fuzz_$$f -max_total_time=$(FUZZ_FORMAT_SECONDS) -max_len=4096 -timeout=10 \
	        -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz_$$f- \
	        $(BUILD)/fuzz-corpus-$$f tests/fuzz/$$f > $(BUILD)/fuzz_$$f.log 2>&1 || \
	        { tail -60 $(BUILD)/fuzz_$$f.log; exit 1; }; \
	    grep -E '^(Done|stat::(number_of_executed_units|new_units_added))' $(BUILD)/fuzz_$$f.log; \
	done

# The tiny model for aarch64, armhf, riscv64 and s390x under qemu-user,
# and freestanding for a Cortex-M4 (tests/cross.sh says what it skips).
check-cross: $(BUILD)/gqac
	GQAC=$(BUILD)/gqac BUILD=$(BUILD) sh tests/cross.sh

# gqac serve under curl (tests/serve.sh): bad requests, overload, hang-ups, SIGTERM.
check-serve: $(BUILD)/gqac
	GQAC=$(BUILD)/gqac GQAC_CACHE=$(BUILD)/run-cache sh tests/serve.sh

# Tensor parallelism under mpirun -np 2 and 4: the MPI comm alone
# (test_comm_mpi), the ranks' logits against the whole model's (test_tp_mpi),
# gqac run (tests/mpi.sh).  Each mpirun under timeout: a hung rank fails.
MPI_TESTS  := test_comm_mpi test_tp_mpi
TEST_MPIRUN = OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 GQAC=$(BUILD)/gqac \
              timeout 300 mpirun --oversubscribe --mca btl self,vader
check-mpi: $(BUILD)/gqac $(BUILD)/libgqa.a $(BUILD)/libgqa_mpi.a $(MPI_TESTS:%=$(BUILD)/%)
	@for np in 2 4; do for t in $(MPI_TESTS); do echo "## mpirun -np $$np $$t"; \
	    $(TEST_MPIRUN) -np $$np $(BUILD)/$$t || exit 1; done; done
	GQAC=$(BUILD)/gqac GQAC_CACHE=$(BUILD)/run-cache BUILD=$(BUILD) sh tests/mpi.sh
$(BUILD)/test_comm_mpi: tests/test_comm_mpi.c tests/mpi_testing.h $(BUILD)/libgqa_mpi.a $(BUILD)/libgqa.a $(TESTING)
	$(CC) $(TEST_CFLAGS) $(patsubst -I%,-isystem %,$(MPI_CFLAGS)) -o $@ $< $(TESTING) $(BUILD)/libgqa_mpi.a \
	    $(BUILD)/libgqa.a $(TEST_LIBS) $(MPI_LIBS)
$(BUILD)/test_tp_mpi: tests/test_tp_mpi.c tests/load_model.h tests/mpi_testing.h $(GQAC_ONLY) $(BUILD)/libgqac.a $(BUILD)/libgqa_mpi.a \
                      $(BUILD)/libgqa.a $(TESTING)
	$(CC) $(TEST_CFLAGS) $(patsubst -I%,-isystem %,$(MPI_CFLAGS)) -o $@ $< $(TESTING) $(GQAC_ONLY) \
	    $(BUILD)/libgqac.a $(BUILD)/libgqa_mpi.a $(BUILD)/libgqa.a $(TEST_LIBS) $(JIT_LIBS) $(MPI_LIBS)

deps:
	@tools/deps.sh test

# LLVM=1: the llvm JIT is always tested (deps.sh installs LLVM).
test: deps
	$(MAKE) --no-print-directory LLVM=1 check
	$(MAKE) --no-print-directory LLVM=1 check-asan
	$(MAKE) --no-print-directory check-cross
	$(MAKE) --no-print-directory check-serve
	$(MAKE) --no-print-directory MPI=1 check-mpi
	$(MAKE) --no-print-directory check-install
	$(MAKE) --no-print-directory fuzz
	@echo "make test: all passed"

# ---- demo ----
# The trained example (examples/fortune): compiled through cc by gqac run,
# then text from a prompt; and what gqac says of its shape and groupings.
demo:
	@tools/deps.sh demo
	@$(MAKE) --no-print-directory all
	GQAC_CACHE=$(BUILD)/run-cache $(BUILD)/gqac run examples/fortune.gqa \
	    --weights examples/fortune/fortune.bin --tokenizer examples/fortune/tokenizer.bin \
	    -p "The meaning of life is" -n 200 --temp 0.8 --seed 42
	@echo
	$(BUILD)/gqac info examples/fortune.gqa

# ---- paper: the GQA paper's uptraining experiment at the fortune model's scale ----
paper:
	@tools/deps.sh paper
	@$(MAKE) --no-print-directory all
	sh tools/paper.sh $(BUILD)

# ---- loadtest: gqac serve under load, MHA, GQA and MQA at one KV budget (minutes; a quiet machine) ----
loadtest:
	@tools/deps.sh loadtest
	@$(MAKE) --no-print-directory $(BUILD)/gqac $(BUILD)/loadtest/loadtest
	sh tools/loadtest.sh $(BUILD)
# (a folder: the run's JSON and SVG go beside the client)
$(BUILD)/loadtest/loadtest: tools/loadtest.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lcurl $(LDLIBS)

# ---- bench (not part of make test; run it on a quiet machine) ----
BENCH := $(BUILD)/bench
# -ffp-contract=fast: ISO C mode otherwise forbids fusing a * b + c into FMA.
BENCH_CFLAGS := -std=c99 -O3 -march=native -ffp-contract=fast -fopenmp -Wall -Wextra -Werror \
                -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Itemplates -Itests -I$(BENCH)
# 32 query heads over 32, 16, 8, 4 KV heads (G = 1, 2, 4, 8), head_dim 64 and 128.
BENCH_SHAPES := 32:32:64 32:16:64 32:8:64 32:4:64 32:32:128 32:16:128 32:8:128 32:4:128
# The weight types of section 5: every matrix of one type, in llama.cpp's
# 123 M shape and TinyLlama's, and TinyLlama as llama.cpp's Q4_K_M.
BENCH_TYPES := f32 q8_0 q4_0 q4_k q6_k bf16
bench: bench-build $(BENCH)/jit_bench
	$(BENCH)/bench $(BUILD)/bench.json $(BENCH)/bench_100m_tcc.so
	$(BENCH)/jit_bench $(BUILD)/bench_jit.json
# The JIT backends' compile time, memory and code speed (bench/jit_bench.c).
$(BENCH)/jit_bench: bench/jit_bench.c bench/bench_util.h $(GQAC_ONLY) $(BUILD)/libgqac.a $(BUILD)/libgqa.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(GQAC_ONLY) $(BUILD)/libgqac.a $(BUILD)/libgqa.a $(LDLIBS) $(JIT_LIBS)
bench-build: $(BUILD)/gqac $(BUILD)/gen_attention
	@mkdir -p $(BENCH)
	$(BUILD)/gen_attention 32768 $(BENCH_SHAPES) $(foreach t,f16 bf16 q8_0,$(BENCH_SHAPES:%=%:$(t))) \
	    > $(BENCH)/attention_cases.c
	$(BUILD)/gqac bench/gqa-100m.gqa -o $(BENCH)/bench_100m.c --prefix bench_100m
	$(BUILD)/gqac examples/tinyllama-1.1b.gqa -o $(BENCH)/tinyllama.c --prefix tinyllama
	$(BUILD)/gqac examples/fortune.gqa --train -o $(BENCH)/fortune.c --prefix fortune
	@rm -f $(BENCH)/typed.h
	@for shape in gqa-123m tinyllama; do for t in $(BENCH_TYPES); do \
	    src=bench/gqa-123m.gqa; [ $$shape = tinyllama ] && src=examples/tinyllama-1.1b.gqa; \
	    stem=$$(echo $$shape | tr -d -)_$$t; \
	    { sed '$$d' $$src; echo "    dtype { weights = $$t }"; echo "}"; } > $(BENCH)/$$stem.gqa; \
	    echo "TYPED($$stem, \"$$shape\", \"$$t\")" >> $(BENCH)/typed.h; \
	done; done
	@echo 'TYPED(tinyllama_q4_k_m, "tinyllama", "Q4_K_M")' >> $(BENCH)/typed.h
	@rm -f $(BENCH)/kv.h
	@for v in f32 f16 bf16 q8_0 window; do \
	    t=$$v; win=; [ $$v = window ] && t=f32 && win='s/kv_heads = 4/kv_heads = 4\n        window = 1024\n        sinks = 4/'; \
	    { sed -e '$$d' -e 's/context = 2048/context = 32768/' -e "$$win" bench/gqa-100m.gqa; \
	      echo "    dtype { kv_cache = $$t }"; echo "}"; } > $(BENCH)/kv_$$v.gqa; \
	    echo "KV(kv_$$v, \"100m $$v\")" >> $(BENCH)/kv.h; \
	done
	cp bench/tinyllama-q4_k_m.gqa $(BENCH)/tinyllama_q4_k_m.gqa
	for f in $$(sed 's/TYPED(\([a-z0-9_]*\),.*/\1/' $(BENCH)/typed.h) $$(sed 's/KV(\([a-z0-9_]*\),.*/\1/' $(BENCH)/kv.h); do \
	    $(BUILD)/gqac $(BENCH)/$$f.gqa -o $(BENCH)/$$f.c --prefix $$f && \
	    $(CC) $(BENCH_CFLAGS) -c -o $(BENCH)/$$f.o $(BENCH)/$$f.c || exit 1; done
	$(CC) $(BENCH_CFLAGS) -o $(BENCH)/bench bench/bench.c $(BENCH)/attention_cases.c \
	    $(BENCH)/bench_100m.c $(BENCH)/tinyllama.c $(BENCH)/fortune.c \
	    $$(sed 's/TYPED(\([a-z0-9_]*\),.*/$(subst /,\/,$(BENCH))\/\1.o/' $(BENCH)/typed.h) \
	    $$(sed 's/KV(\([a-z0-9_]*\),.*/$(subst /,\/,$(BENCH))\/\1.o/' $(BENCH)/kv.h) -lm -ldl
	tcc -shared -o $(BENCH)/bench_100m_tcc.so $(BENCH)/bench_100m.c -lm

# ---- bench-tp: the collectives a tensor-parallel token needs (needs Open MPI) ----
# Built only where mpicc is; `make bench-tp` times MPI_Allreduce of dim floats and the
# vocabulary's MPI_Allgatherv on 2 and 4 ranks, over shared memory and TCP loopback
# (tools/tp_model.py --calib reads its "tp " lines), then tools/tp_bench.sh.
TP_MPICC  := $(shell command -v mpicc 2>/dev/null)
TP_MPIRUN := mpirun --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root)
ifneq ($(TP_MPICC),)
$(BENCH)/allreduce_bench: bench/allreduce_bench.c
	@mkdir -p $(@D)
	$(TP_MPICC) -std=c99 -O2 $(filter-out -std=c99,$(WARN)) -o $@ $<
bench-tp: $(BENCH)/allreduce_bench $(BUILD)/gqac $(BUILD)/libgqa.a $(MPI_ALL)
	@{ for np in 2 4; do for btl in vader,self tcp,self; do echo "## mpirun -np $$np, btl $$btl"; \
	    $(TP_MPIRUN) -np $$np --mca btl $$btl $(BENCH)/allreduce_bench || exit 1; done; done; } \
	    > $(BUILD)/bench-tp-collectives.txt; rc=$$?; cat $(BUILD)/bench-tp-collectives.txt; exit $$rc
	python3 tools/tp_model.py --summary --calib $(BUILD)/bench-tp-collectives.txt
	sh tools/tp_bench.sh $(BUILD)
else
bench-tp:
	@echo "bench-tp: needs Open MPI (apt-get install libopenmpi-dev openmpi-bin)"; exit 1
endif

# ---- install ----
# gqa.pc gives a program built from `gqac -o` output its flags:
# cc -O3 -march=native -ffp-contract=fast -fopenmp model.c $(pkg-config --cflags --libs gqa)
define GQA_PC
prefix=$(PREFIX)
includedir=$${prefix}/include
libdir=$${prefix}/lib
# The generated kernels run across threads when compiled and linked with
# this (gcc, clang); without it they run on one thread.
openmp=-fopenmp

Name: gqa
Description: gqac's runtime: weights, tokenizers, sampling and the program behind gqac --main
Version: $(shell sed -n 's/^\#define GQAC_VERSION "\(.*\)"/\1/p' compiler/gqac.h)
Cflags: -I$${includedir}
Libs: -L$${libdir} -lgqa -lcjson -lm
endef
export GQA_PC
# Written at install time, since it holds PREFIX.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/gqac $(DESTDIR)$(PREFIX)/bin/gqac
	install -m 644 $(BUILD)/libgqa.a $(DESTDIR)$(PREFIX)/lib/libgqa.a
	$(if $(MPI_ALL),install -m 644 $(BUILD)/libgqa_mpi.a $(DESTDIR)$(PREFIX)/lib/libgqa_mpi.a)
	install -m 644 runtime/gqr.h templates/gqa_api.h runtime/engine.h runtime/train.h runtime/tokenizer.h \
	    $(DESTDIR)$(PREFIX)/include/
	printf '%s\n' "$$GQA_PC" > $(DESTDIR)$(PREFIX)/lib/pkgconfig/gqa.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/gqa.pc

# make install into a scratch folder, then the README's way of building a
# model by hand: gqac -o with --main, compiled and linked through gqa.pc
# alone, run on random weights.
INSTALL_TEST := $(BUILD)/install-test
check-install:
	@rm -rf $(INSTALL_TEST)
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(INSTALL_TEST))/root PREFIX=/usr/local
	@set -e; root=$(abspath $(INSTALL_TEST))/root; dir=$(INSTALL_TEST); \
	  $$root/usr/local/bin/gqac examples/tiny.gqa -o $$dir/tiny.c --main; \
	  $$root/usr/local/bin/gqac weights --random examples/tiny.gqa -o $$dir/tiny.bin --seed 1; \
	  flags=$$(PKG_CONFIG_PATH=$$root/usr/local/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$$root \
	           pkg-config --cflags --libs gqa); \
	  printf '#include <engine.h>\n#include <train.h>\n#include <tokenizer.h>\n' > $$dir/headers.c; \
	  $(CC) -std=c99 -Wall -Wextra -Wpedantic -Werror -c -o $$dir/headers.o $$dir/headers.c $$flags; \
	  echo "cc ... tiny.c $$flags"; \
	  $(CC) -O3 -march=native -ffp-contract=fast -fopenmp -o $$dir/tiny $$dir/tiny.c $$flags; \
	  $$dir/tiny --weights $$dir/tiny.bin --tokens 1,2,3 -n 8 --temp 0 > $$dir/out.txt; \
	  test "$$(wc -w < $$dir/out.txt)" -ge 8 || { cat $$dir/out.txt; exit 1; }; \
	  echo "check-install: a --main program built through gqa.pc runs"

clean:
	rm -rf $(BUILD)

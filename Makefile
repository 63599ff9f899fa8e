# gqac: a compiler from .gqa model descriptions to specialized C.
#
#   make            build/gqac and build/libgqa.a (the runtime)
#   make demo       compile the tiny example, make weights, generate tokens
#   make test       unit tests, the same under ASan+UBSan, bounded fuzzing
#   make install    PREFIX=/usr/local
#
# Prerequisites (Debian 12): gcc flex bison libcunit1-dev, and for the
# tests clang tcc valgrind; `make deps` checks them.

CC      ?= gcc
CC      := $(if $(filter default,$(origin CC)),gcc,$(CC))
PREFIX  ?= /usr/local
BUILD   ?= build
FUZZ_SECONDS ?= 60

WARN    := -std=c99 -Wall -Wextra -Wpedantic -Wshadow -Wundef -Wmissing-declarations -Werror
CFLAGS  ?= -O2 -g
ALL_CFLAGS := $(WARN) -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(CFLAGS) \
              -Icompiler -Itemplates -Iruntime -I$(BUILD)
LDLIBS  := -lm

COMPILER_SRC := util.c diag.c front.c sema.c ir.c plan.c emit_c.c cname.c weights.c
COMPILER_OBJ := $(addprefix $(BUILD)/obj/,$(COMPILER_SRC:.c=.o)) \
                $(BUILD)/obj/parser.o $(BUILD)/obj/lexer.o $(BUILD)/obj/templates.o
RUNTIME_SRC  := $(wildcard runtime/*.c)
RUNTIME_OBJ  := $(patsubst runtime/%.c,$(BUILD)/obj/rt_%.o,$(RUNTIME_SRC))
TEMPLATES    := templates/gqa_api.h templates/model.h templates/shape.h templates/parallel.h \
                templates/kernels.c templates/attention.c templates/forward.c
EXAMPLES     := $(wildcard examples/*.gqa)

.PHONY: all demo test check check-asan fuzz install clean deps
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
$(BUILD)/obj/%.o: compiler/%.c compiler/gqac.h | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
$(BUILD)/libgqac.a: $(COMPILER_OBJ)
	$(AR) rcs $@ $^
$(BUILD)/gqac: $(BUILD)/obj/main.o $(BUILD)/libgqac.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# ---- the runtime ----
$(BUILD)/obj/rt_%.o: runtime/%.c runtime/gqr.h templates/gqa_api.h | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
$(BUILD)/libgqa.a: $(RUNTIME_OBJ)
	$(AR) rcs $@ $^

#!/bin/sh
# cross.sh: models built for other CPUs and run under qemu-user, against
# the host's logits, with weights loaded from the same llama2.c file,
# from the same GGUF file (little-endian, read byte by byte, in place for
# block types) and compiled in:
#   tiny    the f32 example (its GGUF f16)
#   qcross  tests/models/qcross.gqa: Q8_0, Q4_0, Q4_K, Q6_K, F16 and BF16
#           tensors, its GGUF in each tensor's own type
#   kvf16   tiny with an f16 KV cache and a window of 16 with 4 sinks in
#           every layer, run 300 positions: past its context, its rings
#           wrapping many times
#   kvbf16  tiny with a bf16 cache, the same window and sinks in every
#           other layer (global_every 2), run its whole context
#   kvq8    qcross with a q8_0 cache, run its whole context
# (the caches convert f16 and bf16 by integer operations in portable C).
# The host and the targets run the same portable C in the same order, so
# the limit is 1e-5 of the largest logit (for the f32 caches; see limit()
# for the others).  aarch64 also runs qcross on
# the NEON dot product (qemu -cpu max): its integer block sums are the
# same, its float sums are in another order, and a last-bit change can
# move an int8 activation a step of max|x|/127 that later layers carry:
# measured 0.012, limit 0.05 (test_model allows 0.06 against a double
# reference; a wrong layout or byte order is off by the logits' size).
# Then templates/qdot.c's kernels (tests/test_qdot.c without CUnit) on
# each CPU, and the freestanding tiny shape linked for a Cortex-M4 in
# f32, q8_0 and q4_0, with its flash and RAM.
#
# A missing cross compiler or qemu is a skip, said as such; under CI
# (CI=true) it is a failure, since CI installs them all.
set -u
gqac=${GQAC:-build/gqac}
out=${BUILD:-build}/cross
pass=0 fail=0 skip=0
mkdir -p "$out"

say() { printf '%s\n' "$*"; }
ok() { say "  ok   $*"; pass=$((pass + 1)); }
bad() { say "  FAIL $*"; fail=$((fail + 1)); }
missing() {
    if [ "${CI:-}" = true ]; then bad "$1: $2 not installed (CI must run this)"
    else say "  skip $1: $2 not installed (apt-get install $3)"; skip=$((skip + 1)); fi
}

# Each model: one loading its weights and one with them compiled in.
gen() { # GQA NAME GGUF-FLAGS...
    src=$1 name=$2
    shift 2
    $gqac "$src" -o "$out/$name.c" --prefix "$name" &&
    $gqac weights --random "$src" -o "$out/$name.bin" --seed 3 &&
    $gqac weights --random "$src" -o "$out/$name.gguf" --seed 3 --format gguf "$@" &&
    $gqac "$src" -o "$out/${name}_e.c" --prefix "${name}_e" --embed-weights "$out/$name.bin"
}
# tiny's and qcross's variants with other KV caches and windows
variant() { # GQA NAME SED
    sed "$3" "$1" > "$out/$2.gqa" && gen "$out/$2.gqa" "$2"
}
models="tiny qcross kvf16 kvbf16 kvq8"
# A last-bit difference (s390x's differ from the host's by 5e-7 in f32)
# can round a K or V value to the next value of the cache's type, which
# later positions carry: s390x measured 3.5e-5 with the f16 and bf16
# caches, 0.011 with q8_0 (a step of max|x|/127), the same as the host's
# own build with FMA contraction (-march=native -ffp-contract=fast)
# against the reference.  A wrong layout or byte order is off by the
# logits' size.
limit() { # MODEL
    case $1 in kvf16 | kvbf16) echo 1e-3 ;; kvq8) echo 0.05 ;; *) echo 1e-5 ;; esac
}
positions() { # MODEL
    case $1 in kvf16*) echo 300 ;; kvbf16*) echo 256 ;; kvq8*) echo 32 ;; *) echo 16 ;; esac
}
gen examples/tiny.gqa tiny --dtype f16 && gen tests/models/qcross.gqa qcross &&
variant examples/tiny.gqa kvf16 's/kv_cache = f32/kv_cache = f16/; s/^\( *\)rope_theta.*/&\n\1window = 16\n\1sinks = 4/' &&
variant examples/tiny.gqa kvbf16 \
    's/kv_cache = f32/kv_cache = bf16/; s/^\( *\)rope_theta.*/&\n\1window = 16\n\1sinks = 4\n\1global_every = 2/' &&
variant tests/models/qcross.gqa kvq8 's/^\( *\)output .*/&\n\1kv_cache = q8_0/' ||
    { say "cross: gqac failed"; exit 1; }

# Debian ships cJSON for the host only: the targets get the runtime
# without it (GQR_NO_CJSON: no safetensors or tokenizer.json).
FLAGS="-std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
       -DGQR_NO_CJSON -Itemplates -Iruntime -I$out"
runtime() { # CC DIR: the runtime's objects, compiled once per CPU
    mkdir -p "$2" || return 1
    for f in runtime/*.c; do
        case $f in runtime/comm_mpi.c | runtime/mpi_main.c) continue ;; esac # MPI's: libgqa_mpi, host only
        $1 $FLAGS -c -o "$2/$(basename "$f" .c).o" "$f" || return 1
    done
}
build_driver() { # CC RUNTIME-DIR OUT API MODEL_SOURCES... (static: qemu needs no target libc)
    cc=$1 rt=$2 exe=$3 api=$4
    shift 4
    $cc $FLAGS -static -DMODEL_API="$api" -DPOSITIONS="$(positions "${api%_api}")" -o "$exe" \
        tests/cross_driver.c "$@" "$rt"/*.o -lm
}

# max |a - b| / max |a| over two files of one number a line, same length,
# within LIMIT.  A NaN or infinity anywhere is "inf": NaN compares false,
# so it would slip past the maximum.
compare() { # A B LIMIT
    [ "$(wc -l < "$1")" -gt 0 ] && [ "$(wc -l < "$1")" = "$(wc -l < "$2")" ] || return 1
    awk -v lim="$3" 'tolower($1) !~ /^[-+0-9.e]+$/ { bad = 1 }
         NR == FNR { a[FNR] = $1; next }
         { d = $1 - a[FNR]; d = d < 0 ? -d : d; m = a[FNR] < 0 ? -a[FNR] : a[FNR]
           if (d > e) e = d; if (m > mx) mx = m }
         END { if (bad || mx == 0) { printf "inf"; exit 1 }
               printf "%.2g", e / mx; exit !(e / mx <= lim) }' "$1" "$2"
}
check() { # WHAT WANT GOT LIMIT
    if err=$(compare "$2" "$3" "$4"); then ok "$1: logits within $err of the host's"
    else bad "$1: logits off by ${err:-?} (limit $4)"; fi
}

say "cross: host reference (portable C: no -march)"
runtime cc "$out/rt-host" || { say "cross: the host build failed"; exit 1; }
for m in $models; do
    build_driver cc "$out/rt-host" "$out/host-$m" ${m}_api "$out/$m.c" &&
        "$out/host-$m" "$out/$m.bin" > "$out/host-$m.txt" &&
        "$out/host-$m" "$out/$m.gguf" > "$out/host-$m-gguf.txt" ||
        { say "cross: the host build of $m failed"; exit 1; }
done

# One CPU: each model from its file, its GGUF and compiled in.
run_models() { # TRIPLE ARCH RUNTIME-DIR
    for m in $models; do
        for mode in file gguf embedded; do
            exe=$out/$2-$m-$mode want=$out/host-$m.txt
            rm -f "$exe" "$exe.txt"
            if [ $mode = file ]; then
                build_driver "$1-gcc" "$3" "$exe" ${m}_api "$out/$m.c" &&
                    "qemu-$2" "$exe" "$out/$m.bin" > "$exe.txt"
            elif [ $mode = gguf ]; then
                want=$out/host-$m-gguf.txt
                [ -f "$out/$2-$m-file" ] && "qemu-$2" "$out/$2-$m-file" "$out/$m.gguf" > "$exe.txt"
            else
                build_driver "$1-gcc" "$3" "$exe" ${m}_e_api "$out/${m}_e.c" "$out/${m}_e_weights.c" &&
                    "qemu-$2" "$exe" > "$exe.txt"
            fi
            if [ $? -ne 0 ]; then bad "$2 $m, weights $mode: build or run failed"; continue; fi
            check "$2 $m, weights $mode" "$want" "$exe.txt" "$(limit $m)"
        done
    done
}

for target in aarch64-linux-gnu:aarch64 arm-linux-gnueabihf:arm riscv64-linux-gnu:riscv64 \
              s390x-linux-gnu:s390x; do
    triple=${target%%:*} arch=${target##*:}
    if ! command -v "$triple-gcc" > /dev/null; then missing "$arch" "$triple-gcc" "gcc-$triple"; continue; fi
    if ! command -v "qemu-$arch" > /dev/null; then missing "$arch" "qemu-$arch" qemu-user; continue; fi
    if ! runtime "$triple-gcc" "$out/rt-$arch"; then bad "$arch: the runtime does not build"; continue; fi
    run_models "$triple" "$arch" "$out/rt-$arch"
done

if command -v aarch64-linux-gnu-gcc > /dev/null && command -v qemu-aarch64 > /dev/null; then
    exe=$out/aarch64-qcross-neon
    rm -f "$exe" "$exe.txt"
    if build_driver "aarch64-linux-gnu-gcc -march=armv8.2-a+dotprod" "$out/rt-aarch64" \
           "$exe" qcross_api "$out/qcross.c" && qemu-aarch64 -cpu max "$exe" "$out/qcross.gguf" > "$exe.txt"
    then check "aarch64 qcross, NEON dot product, weights gguf" "$out/host-qcross-gguf.txt" "$exe.txt" 0.05
    else bad "aarch64 qcross, NEON dot product: build or run failed"; fi
fi

say "cross: quantized-weight kernels (tests/test_qdot.c)"
for target in aarch64-linux-gnu:aarch64:-march=armv8.2-a+dotprod arm-linux-gnueabihf:arm: \
              riscv64-linux-gnu:riscv64: s390x-linux-gnu:s390x:; do
    triple=${target%%:*} rest=${target#*:} arch=${rest%%:*} march=${rest#*:}
    if ! command -v "$triple-gcc" > /dev/null || ! command -v "qemu-$arch" > /dev/null; then
        missing "$arch qdot" "$triple-gcc or qemu-$arch" "gcc-$triple qemu-user"; continue
    fi
    exe=$out/$arch-qdot
    if $triple-gcc $FLAGS $march -static -DQDOT_NO_CUNIT -o "$exe" tests/test_qdot.c "$out/rt-$arch"/*.o -lm &&
       res=$(qemu-$arch ${march:+-cpu max} "$exe" 2>&1); then ok "$arch: $res"
    else bad "$arch: test_qdot failed: $(printf '%s' "${res:-build failed}" | tail -3)"; fi
done

# The Cortex-M4: tiny's shape with whole 32-blocks (tests/models/tiny32.gqa)
# in each weight type, and in f32 with an f16 cache and a window of 16
# with 4 sinks in every layer, and with a bf16 cache windowed in every
# other layer; freestanding, weights in flash.  Flash is text (code and
# the weights, rodata) plus data; RAM is data plus bss (the arena, its
# alignment slack and the logits).
m4() { # NAME SED
    dir=$out/m4-$1
    mkdir -p "$dir"
    sed "$2" tests/models/tiny32.gqa > "$dir/tiny32.gqa" &&
    $gqac weights --random "$dir/tiny32.gqa" -o "$dir/tiny32.bin" --seed 3 &&
    $gqac "$dir/tiny32.gqa" -o "$dir/tiny_m4.c" --prefix tiny_m4 --target freestanding \
          --embed-weights "$dir/tiny32.bin" &&
    arm-none-eabi-gcc -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -mcpu=cortex-m4 -mthumb \
        -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffreestanding -nostdlib \
        -fno-tree-loop-distribute-patterns -Itemplates -I"$dir" -Wl,-e,Reset_Handler \
        -Wl,--gc-sections -o "$dir/tiny_m4.elf" tests/m4_start.c "$dir/tiny_m4.c" "$dir/tiny_m4_weights.c"
}
say "cross: Cortex-M4, freestanding, weights in flash (dim 64, hidden 192, vocab 512, 2 layers)"
if command -v arm-none-eabi-gcc > /dev/null; then
    window='s/^\( *\)kv_heads.*/&\n\1window = 16\n\1sinks = 4/'
    pattern='s/^\( *\)kv_heads.*/&\n\1window = 16\n\1sinks = 4\n\1global_every = 2/'
    for t in f32 q8_0 q4_0 kv-f16-window kv-bf16-pattern; do
        case $t in
        kv-f16-window) edit="$window; s/^\( *\)weights.*/&\n\1kv_cache = f16/" ;;
        kv-bf16-pattern) edit="$pattern; s/^\( *\)weights.*/&\n\1kv_cache = bf16/" ;;
        *) edit="s/weights = f32/weights = $t/" ;;
        esac
        if m4 $t "$edit"; then
            arena=$(sed -n 's/^#define TINY_M4_ARENA_BYTES \([0-9]*\).*/\1/p' "$out/m4-$t/tiny_m4.h")
            ok "$(arm-none-eabi-size "$out/m4-$t/tiny_m4.elf" | awk -v t=$t -v a="$arena" 'NR == 2 {
                printf "cortex-m4 %s: links, nothing undefined: flash %d bytes, RAM %d (arena %d)",
                    t, $1 + $2, $2 + $3, a }')"
        else
            bad "cortex-m4 $t: link failed"
        fi
    done
else
    missing cortex-m4 arm-none-eabi-gcc gcc-arm-none-eabi
fi

say "cross: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]

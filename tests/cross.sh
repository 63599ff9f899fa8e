#!/bin/sh
# cross.sh: the tiny example model built for other CPUs and run under
# qemu-user, against the host's logits (max |diff| / max |host| <= 1e-5),
# with weights loaded from the same llama2.c file, from the same f16 GGUF
# file (little-endian, decoded byte by byte) and compiled in; then the
# freestanding build linked for a Cortex-M4 with nothing undefined.
# And templates/qdot.c's kernels (tests/test_qdot.c without CUnit) on each
# CPU: aarch64 with the NEON dot product (qemu -cpu max), the others on
# the portable path, s390x big-endian.
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

# The models: one loading its weights, one with them compiled in, and
# the freestanding one for the microcontroller.
$gqac examples/tiny.gqa -o "$out/tiny.c" --prefix tiny &&
$gqac weights --random examples/tiny.gqa -o "$out/tiny.bin" --seed 3 &&
$gqac weights --random examples/tiny.gqa -o "$out/tiny.gguf" --seed 3 --format gguf --dtype f16 &&
$gqac examples/tiny.gqa -o "$out/tiny_e.c" --prefix tiny_e --embed-weights "$out/tiny.bin" &&
$gqac examples/tiny.gqa -o "$out/tiny_m4.c" --prefix tiny_m4 --target freestanding \
      --embed-weights "$out/tiny.bin" || { say "cross: gqac failed"; exit 1; }

# Debian ships cJSON for the host only: the targets get the runtime
# without it (GQR_NO_CJSON: no safetensors or tokenizer.json).
FLAGS="-std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
       -DGQR_NO_CJSON -Itemplates -Iruntime -I$out"
build_driver() { # CC OUT MODEL_SOURCES... (static: qemu-user then needs no target libc)
    cc=$1 exe=$2 api=$3
    shift 3
    $cc $FLAGS -static -DMODEL_API="$api" -o "$exe" tests/cross_driver.c "$@" runtime/*.c -lm
}

# max |a - b| / max |a| over two files of one number a line, same length.
compare() {
    [ "$(wc -l < "$1")" -gt 0 ] && [ "$(wc -l < "$1")" = "$(wc -l < "$2")" ] || return 1
    awk 'NR == FNR { a[FNR] = $1; next }
         { d = $1 - a[FNR]; d = d < 0 ? -d : d; m = a[FNR] < 0 ? -a[FNR] : a[FNR]
           if (d > e) e = d; if (m > mx) mx = m }
         END { printf "%.2g", e / mx; exit !(e / mx <= 1e-5) }' "$1" "$2"
}

say "cross: host reference"
build_driver cc "$out/host" tiny_api "$out/tiny.c" && "$out/host" "$out/tiny.bin" > "$out/host.txt" &&
    "$out/host" "$out/tiny.gguf" > "$out/host-gguf.txt" || { say "cross: the host build failed"; exit 1; }

for target in aarch64-linux-gnu:aarch64 arm-linux-gnueabihf:arm riscv64-linux-gnu:riscv64 \
              s390x-linux-gnu:s390x; do
    triple=${target%%:*} arch=${target##*:}
    if ! command -v "$triple-gcc" > /dev/null; then missing "$arch" "$triple-gcc" "gcc-$triple"; continue; fi
    if ! command -v "qemu-$arch" > /dev/null; then missing "$arch" "qemu-$arch" qemu-user; continue; fi
    for mode in file gguf embedded; do
        exe=$out/$arch-$mode want=$out/host.txt
        if [ $mode = file ]; then
            build_driver "$triple-gcc" "$exe" tiny_api "$out/tiny.c" &&
                "qemu-$arch" "$exe" "$out/tiny.bin" > "$exe.txt"
        elif [ $mode = gguf ]; then
            want=$out/host-gguf.txt
            "qemu-$arch" "$out/$arch-file" "$out/tiny.gguf" > "$exe.txt"
        else
            build_driver "$triple-gcc" "$exe" tiny_e_api "$out/tiny_e.c" "$out/tiny_e_weights.c" &&
                "qemu-$arch" "$exe" > "$exe.txt"
        fi
        if [ $? -ne 0 ]; then bad "$arch, weights $mode: build or run failed"; continue; fi
        if err=$(compare "$want" "$exe.txt"); then ok "$arch, weights $mode: logits within $err of the host's"
        else bad "$arch, weights $mode: logits off by ${err:-?} (limit 1e-5)"; fi
    done
done

say "cross: quantized-weight kernels (tests/test_qdot.c)"
for target in aarch64-linux-gnu:aarch64:-march=armv8.2-a+dotprod arm-linux-gnueabihf:arm: \
              riscv64-linux-gnu:riscv64: s390x-linux-gnu:s390x:; do
    triple=${target%%:*} rest=${target#*:} arch=${rest%%:*} march=${rest#*:}
    if ! command -v "$triple-gcc" > /dev/null || ! command -v "qemu-$arch" > /dev/null; then
        missing "$arch qdot" "$triple-gcc or qemu-$arch" "gcc-$triple qemu-user"; continue
    fi
    exe=$out/$arch-qdot
    if $triple-gcc $FLAGS $march -static -DQDOT_NO_CUNIT -o "$exe" tests/test_qdot.c runtime/*.c -lm &&
       res=$(qemu-$arch ${march:+-cpu max} "$exe" 2>&1); then ok "$arch: $res"
    else bad "$arch: test_qdot failed: $(printf '%s' "${res:-build failed}" | tail -3)"; fi
done

say "cross: Cortex-M4, freestanding, weights in flash"
if command -v arm-none-eabi-gcc > /dev/null; then
    elf=$out/tiny_m4.elf
    if arm-none-eabi-gcc -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -mcpu=cortex-m4 -mthumb \
           -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffreestanding -nostdlib \
           -fno-tree-loop-distribute-patterns -Itemplates -I"$out" -Wl,-e,Reset_Handler \
           -Wl,--gc-sections -o "$elf" tests/m4_start.c "$out/tiny_m4.c" "$out/tiny_m4_weights.c"; then
        ok "cortex-m4: links with no undefined symbol"
        arm-none-eabi-size "$elf" | sed 's/^/       /'
    else
        bad "cortex-m4: link failed"
    fi
else
    missing cortex-m4 arm-none-eabi-gcc gcc-arm-none-eabi
fi

say "cross: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]

#!/bin/sh
# deps.sh demo|test|paper|loadtest|llvm: checks what `make demo`, `make test`, `make paper`,
# `make loadtest` or the llvm JIT (make LLVM=1) needs on a Debian machine.  As root it installs what is missing with apt-get;
# otherwise it names the packages and stops.
set -u
need=""
have_cmd() { command -v "$1" >/dev/null 2>&1; }
want() { case " $need " in *" $1 "*) ;; *) need="$need $1" ;; esac; }

have_cmd make  || want make
have_cmd gcc   || want gcc
have_cmd flex  || want flex
have_cmd bison || want bison
# The runtime reads safetensors headers and tokenizer.json with cJSON.
[ -f /usr/include/cjson/cJSON.h ] || want libcjson-dev
# gqac links libtcc (its in-process JIT), which needs tcc's libtcc1.a.
[ -f /usr/include/libtcc.h ] || want libtcc-dev
have_cmd tcc || want tcc
# gqac serve links libmicrohttpd; its tests (tests/serve.sh) and the load test speak HTTP through curl.
[ -f /usr/include/microhttpd.h ] || want libmicrohttpd-dev
have_cmd curl || want curl
if [ "${1:-test}" = test ] || [ "${1:-test}" = llvm ]; then
    # The llvm JIT (make LLVM=1, which make test builds): LLVM 14's libraries, clang's
    # front end as a library (C++, so g++), and LLVM's OpenMP runtime, whose omp.h and
    # clang's own headers the JIT reads when it compiles.
    have_cmd g++ || want g++
    have_cmd llvm-config-14 && [ -f /usr/lib/llvm-14/include/llvm-c/LLJIT.h ] || want llvm-14-dev
    [ -f /usr/lib/llvm-14/include/clang/CodeGen/CodeGenAction.h ] || want libclang-14-dev
    [ -f /usr/lib/llvm-14/lib/libclang-cpp.so ] || want libclang-cpp14-dev
    [ -n "$(ls /usr/lib/llvm-14/lib/clang/*/include/omp.h 2>/dev/null)" ] || want libomp-14-dev
fi
if [ "${1:-test}" = test ]; then
    have_cmd clang || want clang
    [ -f /usr/include/CUnit/Basic.h ] || want libcunit1-dev
    # test_loadtest builds the load client, which links libcurl.
    [ -n "$(ls /usr/include/curl/curl.h /usr/include/*/curl/curl.h 2>/dev/null)" ] || want libcurl4-openssl-dev
    # libFuzzer's runtime ships apart from clang on Debian.
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
        [ "$(uname -m)" != x86_64 ] || want libclang-rt-14-dev
    # check-install builds a program through the installed gqa.pc.
    have_cmd pkg-config || want pkg-config
    # check-mpi: tensor parallelism under mpirun (Open MPI: mpicc's flags, libmpi, mpirun).
    have_cmd mpicc || want libopenmpi-dev
    have_cmd mpirun || want openmpi-bin
    # check-cross (tests/cross.sh): static programs for four CPUs run
    # under qemu-user, so each cross gcc also needs its libc.a, which
    # apt only recommends; and the Cortex-M4 link.
    for t in aarch64-linux-gnu:arm64:aarch64 arm-linux-gnueabihf:armhf:arm \
             riscv64-linux-gnu:riscv64:riscv64 s390x-linux-gnu:s390x:s390x; do
        triple=${t%%:*} rest=${t#*:}
        arch=${rest%%:*} qemu=${rest#*:}
        have_cmd "$triple-gcc" || want "gcc-$triple"
        [ -f "/usr/$triple/lib/libc.a" ] || want "libc6-dev-$arch-cross"
        have_cmd "qemu-$qemu" || want qemu-user
    done
    have_cmd arm-none-eabi-gcc || want gcc-arm-none-eabi
fi
if [ "${1:-test}" = paper ]; then
    # tools/fortune_corpus.py: the fortune corpus, read by python3's standard library.
    have_cmd python3 || want python3
    [ -f /usr/share/games/fortunes/art ] || want fortunes
    [ -f /usr/share/games/fortunes/fortunes ] || want fortunes-min
fi
if [ "${1:-test}" = loadtest ]; then
    # the load client's HTTP: libcurl's multi interface (gqac serve's libmicrohttpd is above)
    [ -n "$(ls /usr/include/curl/curl.h /usr/include/*/curl/curl.h 2>/dev/null)" ] || want libcurl4-openssl-dev
fi
[ -z "$need" ] && exit 0

echo "gqac: missing prerequisites:$need"
if [ "$(id -u)" = 0 ] && have_cmd apt-get; then
    echo "gqac: installing them with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $need >/dev/null && exit 0
    echo "gqac: apt-get failed; install by hand: apt-get install$need" >&2
    exit 1
fi
echo "gqac: install them with: sudo apt-get install$need" >&2
exit 1

#!/bin/sh
# mpi.sh: tensor parallelism under mpirun (make check-mpi).  gqac run of a
# model on 2 and 4 ranks must print the tokens a single process prints
# (--temp 0), for MHA (G = 1), GQA (G = 4: whole groups on 2 ranks, its 2
# KV heads replicated on 4), MQA (G = 8, one KV head on every rank), q/k/v
# biases and untied classifiers, weights as llama2.c .bin, GGUF and
# safetensors, and q8_0 GGUF; rank 0's load line gives every rank's share.
# And the failures: another model's file on one rank, a rank that dies,
# a rank count the model does not split into: each a clear error and every
# rank ended, never a hang (every mpirun runs under timeout).
#   GQAC=build/gqac BUILD=build sh tests/mpi.sh
set -u
GQAC=${GQAC:-build/gqac}
BUILD=${BUILD:-build}
LIMIT=${MPI_TEST_LIMIT:-120}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gqac-mpi.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# Open MPI refuses root without these (CI containers run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN="mpirun --oversubscribe --mca btl self,vader"
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "ok    $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1"; }

# weights MODEL.gqa NAME FORMAT [DTYPE]: random weights, their path.
weights() {
    "$GQAC" weights --random "$1" --seed 7 --format "$3" ${4:+--dtype "$4"} -o "$TMP/$2" >/dev/null ||
        { echo "gqac weights failed for $1" >&2; exit 1; }
    echo "$TMP/$2"
}

# same MODEL.gqa WEIGHTS RANKS...: the tokens of every rank count equal to
# one process's.
same() {
    model=$1 w=$2
    shift 2
    "$GQAC" run "$model" --weights "$w" --tokens 1,5,9 -n 24 --temp 0 >"$TMP/one.txt" 2>"$TMP/one.err" ||
        { fail "$model $w: one process"; cat "$TMP/one.err"; return; }
    for n in "$@"; do
        timeout "$LIMIT" $MPIRUN -np "$n" "$GQAC" run "$model" --weights "$w" --tokens 1,5,9 -n 24 \
            --temp 0 >"$TMP/par.txt" 2>"$TMP/par.err"
        rc=$?
        if [ $rc -eq 0 ] && cmp -s "$TMP/one.txt" "$TMP/par.txt" && grep -q 'held per rank' "$TMP/par.err"; then
            pass "$model $(basename "$w") on $n ranks: $(cat "$TMP/par.txt")"
        else
            fail "$model $(basename "$w") on $n ranks (exit $rc)"
            echo "  one process: $(cat "$TMP/one.txt")"
            echo "  $n ranks:     $(cat "$TMP/par.txt")"
            tail -5 "$TMP/par.err"
        fi
    done
}

tiny_bin=$(weights examples/tiny.gqa tiny.bin bin)
same examples/tiny.gqa "$tiny_bin" 2 4
same examples/tiny.gqa "$(weights examples/tiny.gqa tiny.gguf gguf)" 2 4
same examples/tiny.gqa "$(weights examples/tiny.gqa tiny.safetensors safetensors)" 2
same examples/tiny-mha.gqa "$(weights examples/tiny-mha.gqa mha.bin bin)" 2 4
same examples/tiny-mqa.gqa "$(weights examples/tiny-mqa.gqa mqa.bin bin)" 2 4
same tests/models/g3bias.gqa "$(weights tests/models/g3bias.gqa g3bias.gguf gguf)" 2
same tests/models/g7.gqa "$(weights tests/models/g7.gqa g7.safetensors safetensors)" 2
same tests/models/kv_q8.gqa "$(weights tests/models/kv_q8.gqa kv_q8.gguf gguf)" 2 4

# expect_error NAME PATTERN RANKS COMMAND...: mpirun of the command ends
# within the limit, not 0, its messages holding PATTERN.
expect_error() {
    name=$1 pattern=$2 n=$3
    shift 3
    timeout "$LIMIT" $MPIRUN -np "$n" "$@" >"$TMP/out.txt" 2>"$TMP/err.txt"
    rc=$?
    if [ $rc -eq 124 ]; then
        fail "$name: still running after $LIMIT s"
    elif [ $rc -ne 0 ] && grep -q -- "$pattern" "$TMP/err.txt"; then
        pass "$name: exit $rc, '$(grep -m1 -- "$pattern" "$TMP/err.txt")'"
    else
        fail "$name: exit $rc, no '$pattern' in:"
        cat "$TMP/err.txt"
    fi
}

# Rank 1 is given the MHA model's file.
mha_bin=$TMP/mha.bin
cat >"$TMP/mismatch.sh" <<EOS
#!/bin/sh
w=$tiny_bin
[ "\$OMPI_COMM_WORLD_RANK" = 1 ] && w=$mha_bin
exec "$GQAC" run examples/tiny.gqa --weights "\$w" --tokens 1,5,9 -n 24 --temp 0
EOS
expect_error "another model's file on rank 1" "rank 1: .*mha.bin: n_kv_heads is 8 in the file, but the model was compiled for 2" 2 sh "$TMP/mismatch.sh"

# Rank 1 dies (SIGKILL) before it starts; rank 0 must not wait for it.
cat >"$TMP/die.sh" <<EOS
#!/bin/sh
[ "\$OMPI_COMM_WORLD_RANK" = 1 ] && kill -9 \$\$
exec "$GQAC" run examples/tiny.gqa --weights "$tiny_bin" --tokens 1,5,9 -n 24 --temp 0
EOS
# (mpirun says either that the rank was killed or that it returned non-zero, by a race of its own)
expect_error "rank 1 killed at its start" "signal 9\|killed\|returned a non-zero exit code" 2 sh "$TMP/die.sh"


# 3 ranks: tiny's 8 query heads do not split.
expect_error "3 ranks of tiny" "rank counts that work" 3 "$GQAC" run examples/tiny.gqa --weights "$tiny_bin"

# --jit would run the whole model on every rank: refused.
expect_error "gqac run --jit under mpirun" "leave out --jit" 2 "$GQAC" run examples/tiny.gqa --jit tcc --weights "$tiny_bin"

echo "mpi.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/bin/sh
# tp_bench.sh: what tensor parallelism costs on one machine: the 100M model
# (bench/gqa-100m.gqa, random weights) as 2 MPI ranks of 1 thread against 1
# process of 2 threads (and of 1), by the program's own timing line
# ("prompt: N tok in S s ...; generated: N tok in S s ...").  Both read the
# same bytes over the same memory bus, so the difference is the cost of the
# collectives: per token, per layer (/ layers) and per all-reduce
# (/ (2 x layers + 1), the allgather of the logits counted in).
#
#   tools/tp_bench.sh [BUILD]      (BUILD: where gqac is, default build)
#   RUNS=7 PROMPT=128 GEN=64 CONFIGS="1x2 2x1 1x1" tools/tp_bench.sh
#
# Runs are interleaved (1x2, 2x1, 1x1, 1x2, ...) so that a drift of the
# machine's speed falls on every configuration alike; medians and ranges.
set -eu
build=${1:-build}
runs=${RUNS:-7}
prompt=${PROMPT:-128}
gen=${GEN:-64}
# 1x1, 1x2, 2x1: processes x threads; 1x2b: threads bound to cores; 2x1n: ranks not bound.
configs=${CONFIGS:-1x2 2x1 1x1}
model=${MODEL:-bench/gqa-100m.gqa}
out=$build/tp-bench
for c in $configs; do
    case $c in 1x1|1x2|1x2b|2x1|2x1n) ;;
    *) echo "tp_bench.sh: unknown configuration $c in CONFIGS (1x1, 1x2, 1x2b, 2x1, 2x1n)" >&2; exit 2 ;;
    esac
done
gqac=$build/gqac
mkdir -p "$out"
export GQAC_CACHE="$out/cache"
command -v mpirun >/dev/null || { echo "tp_bench.sh: needs mpirun (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
[ -x "$gqac" ] || { echo "tp_bench.sh: no $gqac (make $gqac)" >&2; exit 1; }
root=; [ "$(id -u)" = 0 ] && root=--allow-run-as-root
layers=$(sed -n 's/^ *layers *= *\([0-9]*\).*/\1/p' "$model")

weights=$out/$(basename "$model" .gqa).bin
[ -f "$weights" ] || "$gqac" weights --random "$model" -o "$weights"
# The prompt as token ids (no tokenizer): decode then runs at contexts prompt .. prompt + gen.
ids=$(seq -s, 1 "$prompt")
flags="--weights $weights --tokens $ids -n $gen --temp 0 --seed 1"

# config NAME: one run, its timing line on stdout.
run_one() {
    case $1 in
    1x1) OMP_NUM_THREADS=1 "$gqac" run "$model" $flags --threads 1 ;;
    1x2) OMP_NUM_THREADS=2 "$gqac" run "$model" $flags --threads 2 ;;
    # mpirun binds each of 2 ranks to a core by default; these two swap the binding.
    1x2b) OMP_NUM_THREADS=2 OMP_PROC_BIND=close OMP_PLACES=cores "$gqac" run "$model" $flags --threads 2 ;;
    2x1) mpirun $root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 -x GQAC_CACHE \
             "$gqac" run "$model" $flags --threads 1 ;;
    2x1n) mpirun $root --oversubscribe --bind-to none -np 2 -x OMP_NUM_THREADS=1 -x GQAC_CACHE \
             "$gqac" run "$model" $flags --threads 1 ;;
    esac 2>&1 >/dev/null | grep '^prompt: '
}

# Compiles each configuration's program once (each rank's is cached apart)
# and checks that 2 ranks give 1 process's tokens.
one=$(OMP_NUM_THREADS=2 "$gqac" run "$model" $flags --threads 2 2>/dev/null)
two=$(mpirun $root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 -x GQAC_CACHE "$gqac" run "$model" $flags --threads 1 2>/dev/null)
[ "$one" = "$two" ] || { echo "tp_bench.sh: 2 ranks generated other tokens than 1 process:" >&2;
                         echo "  1: $one" >&2; echo "  2: $two" >&2; exit 1; }
run_one 1x1 >/dev/null || { echo "tp_bench.sh: the 1x1 run printed no timing line" >&2; exit 1; }

: > "$out/times.txt"
i=0
while [ $i -lt "$runs" ]; do
    i=$((i + 1))
    for c in $configs; do
        line=$(run_one $c) || { echo "tp_bench.sh: the $c run printed no timing line" >&2; exit 1; }
        echo "$c $(cut -d' ' -f1 /proc/loadavg) $line" >> "$out/times.txt"
    done
done

# ms per token of prompt (forward_batch) and of decode, median and range per configuration.
awk -v layers="$layers" -v gen="$gen" -v prompt="$prompt" -v configs="$configs" '
function med(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
{
    c = $1; n[c]++; load[c] = load[c] " " $2
    # prompt: P tok in S s (R tok/s); generated: G tok in S s (R tok/s)
    for (k = 3; k <= NF; k++) {
        if ($k == "prompt:") pp = $(k+1) ; if ($k == "generated:") gg = $(k+1)
    }
    split($0, f, " in "); split(f[2], a, " "); split(f[3], b, " ")
    pr[c, n[c]] = 1000 * a[1] / pp; de[c, n[c]] = 1000 * b[1] / gg
}
END {
    printf "gqa-100m, random f32 weights, prompt %d tokens, %d generated (decode at context %d..%d)\n",
           prompt, gen, prompt, prompt + gen
    printf "| configuration | runs | decode ms/token: median (range) | prompt ms/token: median (range) | load averages |\n|---|---|---|---|---|\n"
    nc = split(configs, cs, " ")
    for (ci = 1; ci <= nc; ci++) {
        c = cs[ci]; if (!n[c]) continue
        delete x; delete y
        for (i = 1; i <= n[c]; i++) { x[i] = de[c, i]; y[i] = pr[c, i] }
        md[c] = med(x, n[c]); mp[c] = med(y, n[c])
        printf "| %s | %d | %.3f (%.3f .. %.3f) | %.3f (%.3f .. %.3f) |%s |\n", c, n[c], md[c], x[1], x[n[c]],
               mp[c], y[1], y[n[c]], load[c]
    }
    if (!n["2x1"] || !n["1x2"]) exit
    d = md["2x1"] - md["1x2"]
    printf "2 ranks x 1 thread - 1 process x 2 threads, decode: %+.3f ms/token (%+.1f%%), %+.1f us per layer, %+.1f us per all-reduce (%d a token)\n",
           d, 100 * d / md["1x2"], 1000 * d / layers, 1000 * d / (2 * layers + 1), 2 * layers + 1
    d = mp["2x1"] - mp["1x2"]
    printf "prompt (forward_batch): %+.3f ms/token (%+.1f%%)\n", d, 100 * d / mp["1x2"]
}' "$out/times.txt"

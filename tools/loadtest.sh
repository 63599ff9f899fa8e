#!/bin/sh
# loadtest.sh BUILD: `make loadtest`.  Serves the fortune model as MHA (the
# shipped model, 8 KV heads), GQA (2 KV heads) and MQA (1), all at ONE KV
# memory budget (what 8 MHA sequences need at the full context), ramps
# closed-loop users 1 .. 64 against each with BUILD/loadtest/loadtest, and
# writes BUILD/loadtest/loadtest.json (every row), BUILD/loadtest/loadtest.svg
# (tokens/s and TTFT p99 against users) and prints the table.
#
# Knobs (environment): LOADTEST_USERS ("1 2 4 8 16 32 64"), LOADTEST_PER_USER
# (requests per user at each level, 8; at least 48 a level), LOADTEST_THREADS
# (the server's threads, 1: the client and the HTTP threads keep the other
# core), LOADTEST_SEED (1).
set -eu
B=${1:-build}
OUT=$B/loadtest
GQAC=$B/gqac
CLIENT=$OUT/loadtest
USERS=${LOADTEST_USERS:-1 2 4 8 16 32 64}
PER_USER=${LOADTEST_PER_USER:-8}
THREADS=${LOADTEST_THREADS:-1}
SEED=${LOADTEST_SEED:-1}
MODEL=examples/fortune.gqa
WEIGHTS=examples/fortune/fortune.bin
TOKENIZER=examples/fortune/tokenizer.bin
mkdir -p "$OUT/variants"
export OMP_WAIT_POLICY=passive # an idle OpenMP thread would spin on the client's core
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; true' EXIT INT TERM

# Prompts: the eval text's fortunes, one a line, of 50-180 characters: 24-116
# tokens of the fortune tokenizer (BOS included), so that with up to 128 new
# tokens every request fits the 256-token context.
awk 'BEGIN { RS = "\n%\n" } { gsub(/[ \t\n]+/, " "); sub(/^ /, ""); sub(/ $/, "");
     if (length($0) >= 50 && length($0) <= 180) print }' examples/fortune/eval.txt > "$OUT/prompts.txt"

# The variants: gqac tune mean-pools the K and V heads and emits the one it
# recommends (the faster, as the limit on perplexity is lifted).
variant() { # kv_heads
    want=$OUT/variants/fortune-kv$1-f32
    rm -f "$want.gqa" "$want.bin"
    for try in 1 2; do
        [ -f "$want.gqa" ] && return 0
        "$GQAC" tune "$MODEL" --weights "$WEIGHTS" --kv-heads "$1" --context 256 \
            --eval examples/fortune/eval.txt --tokenizer "$TOKENIZER" --eval-tokens 512 \
            --max-ppl-increase 100000% --out "$OUT/variants/tune-kv$1" --emit "$OUT/variants" >/dev/null
    done
    [ -f "$want.gqa" ] || { echo "loadtest: gqac tune did not emit the kv$1 variant (it timed the original faster twice: a busy machine?)" >&2; exit 1; }
}
echo "loadtest: making the GQA (kv 2) and MQA (kv 1) variants with gqac tune --emit"
variant 2
variant 1

# Starts gqac serve on a free port; sets URL, PAGE_BYTES and N_PAGES from its
# listening line.
serve() { # model weights kv_memory log
    : > "$4"
    "$GQAC" serve "$1" --weights "$2" --tokenizer "$TOKENIZER" --port 0 --max-seqs 64 \
        --kv-memory "$3" --threads "$THREADS" 2> "$4" &
    SERVER=$!
    for i in $(seq 600); do
        grep -q 'listening on' "$4" && break
        kill -0 "$SERVER" 2>/dev/null || { cat "$4" >&2; echo "loadtest: gqac serve $1 failed" >&2; exit 1; }
        sleep 0.1
    done
    line=$(grep 'listening on' "$4") || { echo "loadtest: gqac serve $1 did not listen in 60 s" >&2; exit 1; }
    URL=$(echo "$line" | sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p')
    N_PAGES=$(echo "$line" | sed -n 's/.*: \([0-9]*\) KV pages of.*/\1/p')
    PAGE_BYTES=$(echo "$line" | sed -n 's/.*KV pages of \([0-9]*\) bytes.*/\1/p')
}

stop() {
    kill -TERM "$SERVER"
    wait "$SERVER" || { echo "loadtest: gqac serve did not exit cleanly on SIGTERM" >&2; exit 1; }
    SERVER=
}

# The budget: 8 full MHA contexts (256 positions = 16 pages each).
serve "$MODEL" "$WEIGHTS" 64M "$OUT/serve-probe.log"
BUDGET=$((8 * 16 * PAGE_BYTES))
stop
echo "loadtest: one KV budget for all: $BUDGET bytes (8 MHA sequences at context 256)"
echo "loadtest: GQA and MQA are mean-pooled, not uptrained: their speed and memory are what this"
echo "          measures, not the quality of their text (see docs/tune.md)"

ROWS=$OUT/rows.json
VARIANTS=$OUT/variants.json
: > "$ROWS"
: > "$VARIANTS"
for v in MHA:8 GQA:2 MQA:1; do
    name=${v%%:*} kv=${v#*:}
    label="$name-kv$kv"
    if [ "$kv" = 8 ]; then m=$MODEL w=$WEIGHTS; else m=$OUT/variants/fortune-kv$kv-f32.gqa w=$OUT/variants/fortune-kv$kv-f32.bin; fi
    serve "$m" "$w" "$BUDGET" "$OUT/serve-$label.log"
    echo "loadtest: $label: $URL, $N_PAGES KV pages of $PAGE_BYTES bytes"
    [ -s "$VARIANTS" ] && echo , >> "$VARIANTS"
    printf '{"label": "%s", "kv_heads": %s, "model": "%s", "page_bytes": %s, "kv_pages": %s}' \
        "$label" "$kv" "$m" "$PAGE_BYTES" "$N_PAGES" >> "$VARIANTS"
    for u in $USERS; do
        r=$((u * PER_USER)); [ $r -lt 48 ] && r=48
        "$CLIENT" --url "$URL" --users "$u" --requests "$r" --prompts "$OUT/prompts.txt" \
            --max-tokens 32..128 --seed "$SEED" --timeout 120 --label "$label" --json "$OUT/$label-u$u.json"
        [ -s "$ROWS" ] && echo , >> "$ROWS"
        cat "$OUT/$label-u$u.json" >> "$ROWS"
    done
    stop
done

{
    printf '{\n"model": "%s", "kv_memory_bytes": %s, "max_seqs": 64, "server_threads": %s, "seed": %s,\n' \
        "$MODEL" "$BUDGET" "$THREADS" "$SEED"
    printf '"note": "GQA and MQA variants are mean-pooled without uptraining: speed and memory, not text quality",\n'
    printf '"variants": [\n'; cat "$VARIANTS"; printf '\n],\n"rows": [\n'; cat "$ROWS"; printf '\n]\n}\n'
} > "$OUT/loadtest.json"
echo
"$CLIENT" --report "$OUT/loadtest.json" --svg "$OUT/loadtest.svg"
echo
echo "loadtest: wrote $OUT/loadtest.json and $OUT/loadtest.svg"

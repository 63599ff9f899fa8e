#!/bin/sh
# serve.sh: gqac serve under a real HTTP client (curl), on the fortune
# example with limits small enough to reach: --max-seqs 4, --max-queue 8,
# --timeout 3.  Answers (JSON shape, usage counts, finish reasons, stop
# strings, streams), bad requests (400/404/405/413 naming what is wrong),
# more clients than slots (200 or 503 + Retry-After, nothing else),
# clients that hang up mid-stream or never send their body, seeded
# requests alone and under load (the same text), the KV pages all back
# after the load, and SIGTERM during streams (each ends with its finish
# event and [DONE]; the server exits 0).  POSIX sh + curl; every curl is
# bounded by --max-time; the server is killed on exit.
#   GQAC=build/asan/gqac sh tests/serve.sh   runs it under a sanitizer build
set -u
GQAC=${GQAC:-build/gqac}
MODEL=examples/fortune.gqa
WEIGHTS=examples/fortune/fortune.bin
TOKENIZER=examples/fortune/tokenizer.bin
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gqac-serve.XXXXXX")
PID=
passed=0 failed=0

cleanup() {
    [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
    kill "$WATCHDOG" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "FAIL  serve.sh stopped by a signal (or ran past ${SERVE_TEST_LIMIT:-300} s)"; exit 1' INT TERM
# a watchdog: however the server misbehaves, the script ends (its output elsewhere, so no pipe waits on it)
(sleep "${SERVE_TEST_LIMIT:-300}"; kill -TERM $$) >/dev/null 2>&1 &
WATCHDOG=$!

# Waits for the client curls started since the last call (not for the server).
PIDS=
bg_wait() { for p in $PIDS; do wait "$p"; done; PIDS=; }
ok() { passed=$((passed + 1)); echo "ok    $1"; }
no() { failed=$((failed + 1)); echo "FAIL  $1"; [ $# -gt 1 ] && echo "      $2"; }

# start FLAGS...: the server on a free port; sets PID, PORT, URL.
SERVERS=0
start() {
    SERVERS=$((SERVERS + 1))
    LOG=$TMP/server$SERVERS.log
    "$GQAC" serve "$MODEL" --weights "$WEIGHTS" --tokenizer "$TOKENIZER" --port 0 "$@" 2>"$LOG" &
    PID=$!
    i=0
    while [ $i -lt 600 ]; do
        PORT=$(sed -n 's|.*listening on http://[^ ]*:\([0-9][0-9]*\) .*|\1|p' "$LOG")
        [ -n "$PORT" ] && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.2
        i=$((i + 1))
    done
    if [ -z "$PORT" ]; then
        echo "FAIL  the server did not start:"; cat "$LOG"
        exit 1
    fi
    URL=http://127.0.0.1:$PORT
}

# post PATH JSON [curl flags]: the status on stdout, body in $TMP/body, headers in $TMP/head.
post() {
    p=$1 d=$2
    shift 2
    curl -s --max-time 30 -o "$TMP/body" -D "$TMP/head" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$d" "$@" "$URL$p"
}
get() { curl -s --max-time 10 -o "$TMP/body" -D "$TMP/head" -w '%{http_code}' "$URL$1"; }
has() { grep -q -- "$1" "$TMP/body"; }
# field NAME FILE: a number field of the JSON in FILE.
field() { sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p" "$2" | head -1; }
# text FILE: the "text" of a completion's JSON, as escaped.
text() { sed -n 's/.*"text":"\(\([^"\\]\|\\.\)*\)".*/\1/p' "$1"; }
metric() { curl -s --max-time 10 "$URL/metrics" | sed -n "s/^$1 //p"; }

# expect STATUS DESC JSON [PATTERN]: a completion answered with STATUS, its body matching PATTERN.
expect() {
    got=$(post /v1/completions "$3")
    if [ "$got" = "$1" ] && { [ $# -lt 4 ] || has "$4"; }; then ok "$2"; else no "$2" "status $got: $(head -c 300 "$TMP/body")"; fi
}

# idle: waits up to 5 s for no running sequence, no page used, no queue.
idle() {
    i=0
    while [ $i -lt 50 ]; do
        [ "$(metric gqac_running_sequences)" = 0 ] && [ "$(metric gqac_kv_pages_used)" = 0 ] &&
            [ "$(metric gqac_queue_depth)" = 0 ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

start --max-seqs 4 --max-queue 8 --timeout 3 --threads 1

# ---- answers ----
got=$(post /v1/completions '{"prompt":"The meaning of life is","max_tokens":5,"seed":3}')
p=$(field prompt_tokens "$TMP/body") c=$(field completion_tokens "$TMP/body") t=$(field total_tokens "$TMP/body")
if [ "$got" = 200 ] && has '"object":"text_completion"' && has '"finish_reason":"length"' && has '"id":"cmpl-' &&
    [ "$c" = 5 ] && [ -n "$p" ] && [ "$t" = $((p + c)) ]; then
    ok "a completion: text_completion, 5 tokens, finish_reason length, usage adds up"
else
    no "a completion" "status $got: $(cat "$TMP/body")"
fi

# greedy from "Q:" ends at the end-of-text token after 23 tokens; ignore_eos goes on to max_tokens
post /v1/completions '{"prompt":"Q:","max_tokens":60,"temperature":0}' >/dev/null
c1=$(field completion_tokens "$TMP/body")
post /v1/completions '{"prompt":"Q:","max_tokens":60,"temperature":0,"ignore_eos":true}' >/dev/null
c2=$(field completion_tokens "$TMP/body")
if [ -n "$c1" ] && [ "$c1" -lt 60 ] && [ "$c2" = 60 ] && has '"finish_reason":"length"'; then
    ok "ignore_eos: $c1 tokens to the end-of-text token, 60 past it"
else
    no "ignore_eos" "$c1 then $c2 tokens: $(cat "$TMP/body")"
fi

# this seed's text holds "doing the": the stop "ing t" cuts it after "do"; a
# stream must hold "ing" back until " t" decides it
post /v1/completions '{"prompt":"Once upon a time","max_tokens":40,"seed":9,"stop":["zzz","ing t"]}' >/dev/null
cp "$TMP/body" "$TMP/stop.json"
if grep -q '"finish_reason":"stop"' "$TMP/stop.json" && text "$TMP/stop.json" | grep -q 'do$'; then
    ok "stop: the text is cut before the stop string, finish_reason stop"
else
    no "stop" "$(cat "$TMP/stop.json")"
fi

# the same request streamed: events, the held-back text the same, a last event, [DONE]
curl -s -N --max-time 30 -H 'Content-Type: application/json' -D "$TMP/head" -o "$TMP/stream" \
    --data-binary '{"prompt":"Once upon a time","max_tokens":40,"seed":9,"stop":["zzz","ing t"],"stream":true}' \
    "$URL/v1/completions"
joined=$(grep '^data: {' "$TMP/stream" | text /dev/stdin | tr -d '\n')
if grep -qi '^content-type: text/event-stream' "$TMP/head" && [ "$(tail -n 2 "$TMP/stream" | head -n 1)" = "data: [DONE]" ] &&
    grep -q '"finish_reason":"stop"' "$TMP/stream" && [ "$joined" = "$(text "$TMP/stop.json")" ]; then
    ok "stream: event-stream, pieces join to the same text, finish event, [DONE]"
else
    no "stream" "joined '$joined' vs '$(text "$TMP/stop.json")': $(tail -c 400 "$TMP/stream")"
fi

curl -s -N --max-time 30 -o "$TMP/stream" --data-binary '{"prompt":"A","max_tokens":12,"seed":1,"stream":true}' \
    "$URL/v1/completions"
n=$(grep -c '"finish_reason":null' "$TMP/stream")
if [ "$n" -ge 1 ] && grep -q '"finish_reason":"length"' "$TMP/stream" && grep -q '"completion_tokens":12' "$TMP/stream" &&
    [ "$(grep -c '^data: \[DONE\]$' "$TMP/stream")" = 1 ]; then
    ok "stream of 12 tokens: $n text events, finish length with usage, one [DONE]"
else
    no "stream of 12 tokens" "$(cat "$TMP/stream")"
fi

got=$(get /health)
[ "$got" = 200 ] && has '"status":"ok"' && ok "GET /health" || no "GET /health" "$got"

# ---- bad requests ----
expect 400 "malformed JSON: 400" '{"prompt": "x",' '"type":"invalid_request_error"'
expect 400 "not an object: 400" '[1,2]' invalid_request_error
expect 400 "prompt 5: 400 naming prompt" '{"prompt":5}' '"param":"prompt"'
expect 400 "no prompt: 400" '{"max_tokens":3}' '"param":"prompt"'
expect 400 "max_tokens \"x\": 400" '{"prompt":"a","max_tokens":"x"}' '"param":"max_tokens"'
expect 400 "max_tokens 0: 400" '{"prompt":"a","max_tokens":0}' '"param":"max_tokens"'
expect 400 "max_tokens 2.5: 400" '{"prompt":"a","max_tokens":2.5}' '"param":"max_tokens"'
expect 400 "max_tokens 10^9: 400 with the context length" '{"prompt":"a","max_tokens":1000000000}' \
    "maximum context length is 256 tokens; the prompt has [0-9]* and max_tokens asks for 1000000000"
expect 400 "temperature -1: 400" '{"prompt":"a","temperature":-1}' '"param":"temperature"'
expect 400 "top_p 0: 400" '{"prompt":"a","top_p":0}' '"param":"top_p"'
expect 400 "top_p 1.5: 400" '{"prompt":"a","top_p":1.5}' '"param":"top_p"'
expect 400 "seed -1: 400" '{"prompt":"a","seed":-1}' '"param":"seed"'
expect 400 "stop with 5 strings: 400" '{"prompt":"a","stop":["a","b","c","d","e"]}' '"param":"stop"'
expect 400 "stop \"\": 400" '{"prompt":"a","stop":""}' '"param":"stop"'
expect 400 "stream \"yes\": 400" '{"prompt":"a","stream":"yes"}' '"param":"stream"'
expect 200 "unknown fields and nulls ignored" '{"prompt":"a","max_tokens":2,"model":"x","echo":null,"top_p":null}' \
    '"completion_tokens":2'
long=$(i=0; while [ $i -lt 300 ]; do printf 'the quick brown fox jumps. '; i=$((i + 1)); done)
expect 400 "a prompt longer than the context: 400 with the numbers" "{\"prompt\":\"$long\",\"max_tokens\":1}" \
    "maximum context length is 256 tokens; the prompt has [0-9]* and max_tokens asks for 1"
head -c 1100000 /dev/zero | tr '\0' 'a' > "$TMP/big"
got=$(curl -s --max-time 30 -o "$TMP/body" -w '%{http_code}' --data-binary @"$TMP/big" "$URL/v1/completions")
[ "$got" = 413 ] && ok "a 1.1 MB body: 413" || no "a 1.1 MB body: 413" "status $got"
got=$(get /nowhere)
[ "$got" = 404 ] && has '"error"' && ok "unknown path: 404" || no "unknown path: 404" "$got"
got=$(get /v1/completions)
[ "$got" = 405 ] && grep -qi '^allow: POST' "$TMP/head" && ok "GET /v1/completions: 405, Allow: POST" ||
    no "GET /v1/completions: 405" "$got"
got=$(post /health '{}')
[ "$got" = 405 ] && ok "POST /health: 405" || no "POST /health: 405" "$got"

# ---- the same seed alone and under load ----
SEEDED='{"prompt":"The cat","max_tokens":48,"seed":42,"temperature":0.9}'
post /v1/completions "$SEEDED" >/dev/null
text "$TMP/body" > "$TMP/alone"
i=0
while [ $i -lt 8 ]; do
    curl -s --max-time 30 -o /dev/null --data-binary "{\"prompt\":\"Fortune $i\",\"max_tokens\":100,\"seed\":$i}" \
        "$URL/v1/completions" &
    PIDS="$PIDS $!"
    i=$((i + 1))
done
sleep 0.05
curl -s --max-time 30 -o "$TMP/body" --data-binary "$SEEDED" "$URL/v1/completions"
bg_wait
text "$TMP/body" > "$TMP/loaded"
if [ -s "$TMP/alone" ] && cmp -s "$TMP/alone" "$TMP/loaded"; then
    ok "seed 42 alone and beside 8 others: the same text"
else
    no "seeded text differs" "alone '$(cat "$TMP/alone")' loaded '$(cat "$TMP/loaded")'"
fi

# ---- 40 clients against 4 slots and 8 queue places ----
i=0
while [ $i -lt 40 ]; do
    curl -s --max-time 60 -o /dev/null -D "$TMP/h$i" -w '%{http_code}\n' \
        --data-binary "{\"prompt\":\"Client $i says\",\"max_tokens\":150,\"seed\":$i}" "$URL/v1/completions" \
        > "$TMP/code$i" &
    PIDS="$PIDS $!"
    i=$((i + 1))
done
bg_wait
n200=$(cat "$TMP"/code* | grep -c '^200$') n503=$(cat "$TMP"/code* | grep -c '^503$')
other=$(cat "$TMP"/code* | grep -v '^200$' | grep -vc '^503$')
retry=$(grep -li '^retry-after: 1' "$TMP"/h* 2>/dev/null | wc -l)
if [ "$n200" -ge 1 ] && [ "$n503" -ge 1 ] && [ "$other" = 0 ] && [ "$retry" = "$n503" ] && kill -0 "$PID"; then
    ok "40 clients: $n200 x 200, $n503 x 503 (each with Retry-After), nothing else"
else
    no "40 clients" "200: $n200, 503: $n503, other: $other ($(cat "$TMP"/code* | sort | uniq -c | tr '\n' ' ')), retry-after: $retry"
fi
rm -f "$TMP"/code* "$TMP"/h[0-9]*

# ---- clients that go away ----
# LONG runs its 240 tokens (this seed meets no end-of-text), about 0.3 s here:
# cut at 0.1 s, its sequence must be cancelled, not run to the end.
LONG='{"prompt":"Gone","max_tokens":240,"seed":1,"temperature":1.5'
post /v1/completions "$LONG}" >/dev/null
[ "$(field completion_tokens "$TMP/body")" = 240 ] && ok "the long request runs 240 tokens" ||
    no "the long request runs 240 tokens (the model changed? pick another seed)" "$(head -c 300 "$TMP/body")"
before=$(metric 'gqac_requests_finished_total{reason="cancel"}')
i=0
while [ $i -lt 6 ]; do
    curl -s -N --max-time 0.1 -o /dev/null --data-binary "$LONG,\"stream\":true}" "$URL/v1/completions" &
    PIDS="$PIDS $!"
    i=$((i + 1))
done
bg_wait
idle && cancelled=$(($(metric 'gqac_requests_finished_total{reason="cancel"}') - before)) || cancelled=-1
[ "$cancelled" -ge 1 ] && ok "6 streams cut by their clients at 0.1 s: $cancelled cancelled; 0 running, 0 KV pages, queue 0" ||
    no "after hang-ups" "cancelled $cancelled, running $(metric gqac_running_sequences), pages $(metric gqac_kv_pages_used)"

# clients that stop sending (their headers half sent, or the body never
# sent) are cut after --timeout 3.  curl cannot stall mid-request, so
# these speak through bash's /dev/tcp (bash being there; else a skip).
# slow NAME BYTES: BYTES sent, then nothing; the server must close within 2-8 s.
slow() {
    t0=$(date +%s)
    bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "$2" >&3 && timeout 15 cat <&3 >/dev/null' _ "$PORT" "$2"
    st=$?
    t1=$(date +%s)
    if [ $st = 0 ] && [ $((t1 - t0)) -ge 2 ] && [ $((t1 - t0)) -le 8 ] && kill -0 "$PID"; then
        ok "$1: cut after $((t1 - t0)) s (--timeout 3)"
    else
        no "$1" "status $st after $((t1 - t0)) s"
    fi
}
if command -v bash >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then
    slow "a client that never sends its body" 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"pro'
    slow "a client that stops within its headers" 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le'
else
    echo "skip  slow clients: no bash (its /dev/tcp) or no timeout"
fi

# ---- after all of it ----
got=$(get /metrics)
if [ "$got" = 200 ] && idle && has '^gqac_requests_total [1-9]' && has 'gqac_time_to_first_token_seconds_bucket{le="+Inf"}' &&
    has 'gqac_inter_token_latency_seconds_count' && has '^gqac_kv_pages_total [1-9]' &&
    grep -qi '^content-type: text/plain; version=0.0.4' "$TMP/head"; then
    ok "metrics after the load: Prometheus text, 0 running, 0 pages used, queue 0"
else
    no "metrics after the load" "$(head -c 600 "$TMP/body")"
fi

# another server on the same port: exit 1, saying why
"$GQAC" serve "$MODEL" --weights "$WEIGHTS" --tokenizer "$TOKENIZER" --port "$PORT" 2>"$TMP/second.log"
st=$?
[ $st = 1 ] && grep -q "cannot listen on 127.0.0.1:$PORT: " "$TMP/second.log" && ok "port in use: exit 1, cannot listen" ||
    no "port in use" "exit $st: $(cat "$TMP/second.log")"

# ---- SIGTERM while streams run ----
# 12 long streams on 4 slots: once all are in, 4 run and 8 wait; the
# waiting ones end at once with finish_reason "shutdown", the running ones
# finish (their grace is 10 s).
accepted=$(metric gqac_requests_total)
i=0
while [ $i -lt 12 ]; do
    curl -s -N --max-time 30 -o "$TMP/term$i" --data-binary "$LONG,\"stream\":true}" "$URL/v1/completions" &
    PIDS="$PIDS $!"
    i=$((i + 1))
done
i=0 # until the engine took all 12 (not yet connected, a client would be refused by the closed socket)
while [ $i -lt 100 ] && [ "$(metric gqac_requests_total)" -lt $((accepted + 12)) ]; do
    sleep 0.05
    i=$((i + 1))
done
kill -TERM "$PID"
t0=$(date +%s)
wait "$PID"
status=$?
t1=$(date +%s)
PID=
bg_wait
ended=0 refused=0 shut=0 broken=0
for f in "$TMP"/term*; do
    if grep -q '"finish_reason":"[a-z]*"' "$f" && [ "$(tail -n 2 "$f" | head -n 1)" = "data: [DONE]" ]; then
        ended=$((ended + 1))
        grep -q '"finish_reason":"shutdown"' "$f" && shut=$((shut + 1))
    elif grep -q '"error"' "$f"; then
        refused=$((refused + 1))
    else
        broken=$((broken + 1))
    fi
done
if [ "$status" = 0 ] && [ $((t1 - t0)) -le 12 ] && [ "$broken" = 0 ] && [ "$ended" -ge 1 ] && [ "$shut" -ge 1 ]; then
    ok "SIGTERM: exit 0 after $((t1 - t0)) s; $ended streams ended with a finish event and [DONE] ($shut of them shutdown), $refused refused"
else
    no "SIGTERM" "exit $status after $((t1 - t0)) s; ended $ended, refused $refused, broken $broken; $(tail -n 3 "$LOG")"
fi

# ---- a KV cache smaller than a context: 8 pages of 16 positions ----
start --kv-memory 512k --max-seqs 2
got=$(post /v1/completions '{"prompt":"a","max_tokens":200}')
[ "$got" = 400 ] && has "KV cache (--kv-memory) holds 128" && has context_length_exceeded &&
    ok "--kv-memory 512k: 200 tokens asked of 128 positions: 400 saying so" || no "--kv-memory 512k" "$got $(cat "$TMP/body")"
got=$(post /v1/completions '{"prompt":"a","max_tokens":100,"seed":2}')
[ "$got" = 200 ] && ok "--kv-memory 512k: 100 tokens fit" || no "--kv-memory 512k: 100 tokens" "$got $(cat "$TMP/body")"
kill -TERM "$PID" && wait "$PID"
st=$?
PID=
[ $st = 0 ] && ok "SIGTERM when idle: exit 0" || no "SIGTERM when idle: exit $st"

# a sanitizer build (GQAC=build/asan/gqac) reports into the server's log
if grep -q 'Sanitizer\|runtime error:' "$TMP"/server*.log; then
    no "the server's log holds a sanitizer report" "$(grep -m 5 'Sanitizer\|runtime error:\|#[0-9] ' "$TMP"/server*.log)"
else
    ok "no sanitizer report in the server's log"
fi

# ---- usage errors ----
"$GQAC" serve "$MODEL" --weights "$WEIGHTS" --tokenizer "$TOKENIZER" --port 99999 2>/dev/null
[ $? = 2 ] && ok "--port 99999: exit 2" || no "--port 99999: exit 2"
"$GQAC" serve "$MODEL" --tokenizer "$TOKENIZER" 2>/dev/null
[ $? = 2 ] && ok "no --weights: exit 2" || no "no --weights: exit 2"
"$GQAC" serve "$MODEL" --weights "$WEIGHTS" --tokenizer "$TOKENIZER" --kv-memory 1k 2>/dev/null
[ $? = 2 ] && ok "--kv-memory 1k (less than a page): exit 2" || no "--kv-memory 1k: exit 2"
"$GQAC" serve "$MODEL" --weights "$WEIGHTS" --tokenizer "$TOKENIZER" --kv-memory lots 2>/dev/null
[ $? = 2 ] && ok "--kv-memory lots: exit 2" || no "--kv-memory lots: exit 2"
"$GQAC" serve "$MODEL" --weights "$TMP/none.bin" --tokenizer "$TOKENIZER" 2>/dev/null
[ $? = 1 ] && ok "missing weights: exit 1" || no "missing weights: exit 1"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

#!/bin/sh
# paper.sh [BUILD]: the GQA paper's uptraining experiment (Ainslie et al.
# 2023, section 3 and figures 5-6) at the fortune model's scale.  The MHA
# model converted to 4, 2 and 1 KV heads with mean-pooled, first-head and
# random K/V heads, each uptrained for 0, 1, 2.5, 5 and 10% of its original
# 1408 steps on its own training text with its recipe, then decode latency
# and perplexity on eval.txt.  Needs python3 and the fortunes packages
# (tools/deps.sh paper).  Writes BUILD/paper/uptrain.{json,csv,svg} and
# uptrain-uptrain.svg.
set -eu
build=${1:-build}
out=$build/paper
mkdir -p "$out"
[ -s "$out/train.txt" ] || python3 tools/fortune_corpus.py "$out"
GQAC_CACHE=${GQAC_CACHE:-$build/run-cache} "$build/gqac" tune examples/fortune.gqa \
    --weights examples/fortune/fortune.bin --tokenizer examples/fortune/tokenizer.bin \
    --eval examples/fortune/eval.txt --train "$out/train.txt" \
    --kv-heads 4,2,1 --init mean,first,random --uptrain 0,1%,2.5%,5%,10% --pretrain-steps 1408 \
    --context 64,256 --runs 31 --threads "${THREADS:-2}" --out "$out/uptrain"

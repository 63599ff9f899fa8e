#!/usr/bin/python3
"""torch_train_speed.py: PyTorch's time per training step of the fortune recipe.

    /usr/bin/python3 tools/torch_train_speed.py THREADS [--warmup W] [--steps K]

Times tools/train_fortune.py's step (model from random init, batch 16 x seq
256 of random tokens, forward, backward, clip_grad_norm_ 1.0, AdamW) with
torch.set_num_threads(THREADS): W warmup steps, then K timed ones.  Prints
one JSON line on stdout:

    {"threads": N, "s_per_step_median": s, "min": s, "max": s, "tokens_per_s": t, "torch": v, ...}

with the oneDNN sgemm shim of train_fortune.py (as the recipe trains) unless
--no-fast-gemm.  Exits 3 with a message when torch is not importable, so that
`make bench` can skip the comparison.
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time

try:
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_fortune as tf
except ImportError as e:
    print(f"torch_train_speed.py: PyTorch not available ({e}); "
          "install python3-torch and run it with /usr/bin/python3", file=sys.stderr)
    sys.exit(3)

BATCH, SEQ = 16, tf.SHAPE["context"]


def make_step(threads):
    """The recipe's model and optimizer, and a function doing one step."""
    torch.set_num_threads(threads)
    torch.manual_seed(tf.SEED)
    model = tf.Llama(tf.SHAPE)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=2e-3, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(tf.SEED)
    stream = torch.randint(tf.SHAPE["vocab"], (200000,), generator=gen)

    def step():
        x, y = tf.get_batch(stream, BATCH, SEQ, gen)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("threads", type=int)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--no-fast-gemm", action="store_true",
                    help="keep the system BLAS (see train_fortune.py's use_fast_gemm)")
    args = ap.parse_args()
    if args.threads < 1 or args.warmup < 0 or args.steps < 1:
        ap.error("THREADS and --steps must be >= 1, --warmup >= 0")
    if not args.no_fast_gemm:
        with contextlib.redirect_stdout(sys.stderr):   # stdout: the JSON line only
            tf.use_fast_gemm()                         # may re-exec this script
    step = make_step(args.threads)
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({
        "threads": args.threads, "s_per_step_median": round(med, 5),
        "min": round(min(times), 5), "max": round(max(times), 5),
        "tokens_per_s": round(BATCH * SEQ / med, 1), "torch": torch.__version__,
        "batch": BATCH, "seq": SEQ, "steps": args.steps, "warmup": args.warmup,
        "sgemm": "oneDNN shim" if os.environ.get("TRAIN_FORTUNE_SHIM") else "system BLAS",
    }), flush=True)


if __name__ == "__main__":
    main()

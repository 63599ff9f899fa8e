#!/usr/bin/env python3
"""tp_model.py: what tensor-parallel decoding over N machines should cost per token.

The model (docs/parallel.md explains the split it prices):

  t(token) = max over ranks of bytes_read(rank) / bandwidth      (decoding is memory-bound)
           + (2 * layers + 1) * allreduce(dim * 4 bytes)          (after Wo, after W2; the embedding)
           + allgather(vocab * 4 bytes)                            (the logits, to every rank)

  allreduce(S) = min(recursive doubling: ceil(log2 N) * (alpha + S / beta),
                     ring:               2 (N - 1) * alpha + 2 (N - 1) / N * S / beta)
  allgather(S) = ceil(log2 N) * alpha + (N - 1) / N * S / beta

MPI picks between such algorithms by message size; for the dim-float messages of
decoding (3-32 KB) recursive doubling wins, so the latency alpha counts log2 N times.
A rank's bytes: its share of Wq, Wo, W1, W2, W3 (1/N), of Wk and Wv (1/N of the KV
heads, or one KV head when N > kv_heads: replicated), its vocabulary rows of the
classifier, the norms, and its KV heads' cache at the given context.

Every assumption is an option with its default printed in the header; python3's
standard library only; nothing in the build needs it.

  tools/tp_model.py                       the tables of docs/parallel.md
  tools/tp_model.py --calib bench.txt     alpha/beta of this machine from allreduce_bench's "tp " lines
"""
import argparse
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Published shapes (Hugging Face config.json of meta-llama/Meta-Llama-3-8B and
# meta-llama/Llama-2-70b-hf); TinyLlama and the 100M model are read from the repo.
BUILTIN = {
    "Llama-3-8B": dict(vocab=128256, dim=4096, layers=32, heads=32, kv_heads=8, hidden=14336),
    "Llama-2-70B": dict(vocab=32000, dim=8192, layers=80, heads=64, kv_heads=8, hidden=28672),
}

# Networks: (name, alpha in seconds per message, beta in bytes per second).
# 10 GbE over TCP: 30-50 us per message between two hosts through a switch (kernel
# TCP, interrupt coalescing); 100 GbE (RDMA-capable NICs, or TCP on a tuned host): ~10 us.
NETWORKS = [("10 Gbit/s", 40e-6, 10e9 / 8), ("100 Gbit/s", 10e-6, 100e9 / 8)]

# Loopback of this machine (AMD EPYC Zen 4 VM, 2 vCPUs, Open MPI 4.1.4), fitted by
# --calib to bench/allreduce_bench's 2-rank medians (see docs/parallel.md for the runs).
LOOPBACK = {"shared memory": (1.54e-6, 2.28e9), "TCP loopback": (12.45e-6, 1.51e9)}


def read_gqa(path):
    """The few numbers the model needs from a .gqa file (plain `key = number` lines)."""
    text = Path(path).read_text()
    get = lambda key, default=None: (lambda m: int(m.group(1)) if m else default)(
        re.search(r"^\s*%s\s*=\s*(\d+)\s*(#.*)?$" % key, text, re.M))
    s = dict(vocab=get("vocab"), dim=get("dim"), layers=get("layers"), heads=get("heads"),
             kv_heads=get("kv_heads"), hidden=get("hidden"))
    if None in s.values():
        sys.exit("tp_model.py: %s: a shape field is missing or not a plain number" % path)
    tied = re.search(r"^\s*tie_embeddings\s*=\s*(\w+)", text, re.M)
    s["tied"] = tied is None or tied.group(1) == "true"
    return s


def shapes():
    out = {"gqa-100m": read_gqa(ROOT / "bench/gqa-100m.gqa"),
           "TinyLlama-1.1B": read_gqa(ROOT / "examples/tinyllama-1.1b.gqa")}
    out.update({k: dict(v, tied=False) for k, v in BUILTIN.items()})
    for s in out.values():
        s["head_dim"] = s["dim"] // s["heads"]
    return out


def why_not(s, n, block):
    """None when n ranks split the shape with weight blocks of `block` values, else why."""
    h, k, f = s["heads"], s["kv_heads"], s["hidden"]
    if h % n:
        return "heads %d %% %d" % (h, n)
    if (n <= k and k % n) or (n > k and n % k):
        return "kv_heads %d" % k
    if f % n or (f // n) % block:
        return "hidden %d/%d not whole blocks of %d" % (f, n, block)
    if (h // n * s["head_dim"]) % block:
        return "Wo columns not whole blocks"
    return None


def rank_rows(s, n):
    """Rank 0's share (the largest: it holds the extra vocabulary row when V % N != 0):
    query rows, KV rows, hidden units, vocabulary rows."""
    hd = s["head_dim"]
    kv_heads = s["kv_heads"] // n if n <= s["kv_heads"] else 1  # replicated past kv_heads
    return s["heads"] // n * hd, kv_heads * hd, s["hidden"] // n, -(-s["vocab"] // n)


def layer_weights(s, n):
    """Weights (values) of one layer on rank 0: wq wk wv, wo, w1 w3 w2."""
    q, kv, f, _ = rank_rows(s, n)
    return s["dim"] * (q + 2 * kv) + q * s["dim"] + 3 * s["dim"] * f


def rank_bytes(s, n, bits, context, kv_bytes):
    """Bytes rank 0 reads per token: its layers, its classifier rows, one embedding
    row, the norms (f32) and its KV heads' cache."""
    d, layers = s["dim"], s["layers"]
    _, kv, _, vocab_rows = rank_rows(s, n)
    weights = (layers * layer_weights(s, n) + vocab_rows * d + d) * bits / 8
    return weights + (2 * layers + 1) * d * 4 + layers * context * 2 * kv * kv_bytes


def held_bytes(s, n, bits):
    """Weight bytes rank 0 keeps: its layers, its rows of the classifier and (untied) the embedding."""
    d, layers = s["dim"], s["layers"]
    vocab_rows = rank_rows(s, n)[3]
    tables = vocab_rows * d * (1 if s["tied"] else 2)
    return (layers * layer_weights(s, n) + tables) * bits / 8 + (2 * layers + 1) * d * 4


def allreduce(size, n, alpha, beta):
    if n == 1:
        return 0.0
    steps = math.ceil(math.log2(n))
    return min(steps * (alpha + size / beta), 2 * (n - 1) * alpha + 2 * (n - 1) / n * size / beta)


def allgather(size, n, alpha, beta):
    if n == 1:
        return 0.0
    return math.ceil(math.log2(n)) * alpha + (n - 1) / n * size / beta


def comm_time(s, n, alpha, beta):
    return ((2 * s["layers"] + 1) * allreduce(s["dim"] * 4, n, alpha, beta)
            + allgather(s["vocab"] * 4, n, alpha, beta))


def table(name, s, bits, bw, args):
    label = "%.1f bits/weight (block %d)" % (bits, args.block) if bits < 16 else "f16"
    block = args.block if bits < 16 else 1
    print("\n%s, %s, %.0f GB/s per machine, KV cache f16 at context %d:" % (name, label, bw / 1e9, args.context))
    heads = ["N", "GB held", "GB read", "memory ms"]
    for net, _, _ in NETWORKS:
        heads += ["comm ms @%s" % net.split()[0], "ms/token", "speedup"]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    base = None
    for n in args.ranks:
        why = why_not(s, n, block)
        if why:
            print("| %d | (does not split: %s) |" % (n, why))
            continue
        mem = rank_bytes(s, n, bits, args.context, 2) / bw
        row = ["%d" % n, "%.2f" % (held_bytes(s, n, bits) / 1e9), "%.2f" % (rank_bytes(s, n, bits, args.context, 2) / 1e9),
               "%.1f" % (mem * 1e3)]
        for _, alpha, beta in NETWORKS:
            c = comm_time(s, n, alpha, beta)
            if n == 1:
                base = mem
            row += ["%.2f" % (c * 1e3), "%.1f" % ((mem + c) * 1e3), "%.2fx" % (base / (mem + c)) if base else "-"]
        print("| " + " | ".join(row) + " |")


def summary(args):
    """One line per model, type and network: ms/token (speedup) on each rank count."""
    print("\nms per token (speedup over 1 machine), %.0f GB/s per machine, context %d; * the weights do not fit %.0f GB:"
          % (args.bw, args.context, args.memory))
    print("| model | weights | network | " + " | ".join("N = %d" % n for n in args.ranks) + " |")
    print("|---|---|---|" + "---|" * len(args.ranks))
    for name in args.models:
        s = SHAPES[name]
        for bits in (4.5, 16):
            block = args.block if bits < 16 else 1
            for net, alpha, beta in NETWORKS:
                cells, base = [], None
                for n in args.ranks:
                    if why_not(s, n, block):
                        cells.append("-")
                        continue
                    t = rank_bytes(s, n, bits, args.context, 2) / (args.bw * 1e9) + comm_time(s, n, alpha, beta)
                    base = base or t
                    cell = "%.0f (%.1fx)" % (t * 1e3, base / t) if t >= 0.0995 else "%.1f (%.1fx)" % (t * 1e3, base / t)
                    cells.append(cell + ("*" if held_bytes(s, n, bits) > args.memory * 1e9 else ""))
                print("| %s | %s | %s | %s |" % (name, "4.5 bits" if bits < 16 else "f16", net, " | ".join(cells)))


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def calibrate(path):
    """alpha, beta of each transport in an allreduce_bench log (2-rank medians, least squares)."""
    fits, btl, pts = {}, "shared memory", {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        sys.exit("tp_model.py: %s: %s" % (path, e.strerror))
    for line in lines:
        if line.startswith("##"):
            btl = "TCP loopback" if "tcp" in line else "shared memory"
        m = re.match(r"tp allreduce ranks=2 floats=(\d+) median_us=([\d.]+)", line)
        if m:
            pts.setdefault(btl, {}).setdefault(int(m.group(1)) * 4, []).append(float(m.group(2)) * 1e-6)
    if not all(len(by_size) >= 2 for by_size in pts.values()) or not pts:
        sys.exit("tp_model.py: %s: no 2-rank allreduce lines of 2 sizes or more (allreduce_bench's \"tp \" lines)"
                 % path)
    for btl, by_size in pts.items():
        xs = sorted(by_size)
        ys = [median(by_size[x]) for x in xs]  # over runs
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        fits[btl] = (my - slope * mx, 1 / slope)
        print("%s: alpha %.2f us, beta %.2f GB/s (2 ranks: t = alpha + bytes / beta; %s)" % (
            btl, fits[btl][0] * 1e6, fits[btl][1] / 1e9,
            ", ".join("%d B: %.2f us" % (x, y * 1e6) for x, y in zip(xs, ys))))
    return fits


def this_machine(args, fits):
    """2 ranks x 1 thread on this machine against 1 process x 2 threads: the same bytes
    over the same memory bus, plus the loopback's collectives."""
    print("\nThis machine, 2 ranks of 1 thread vs 1 process of 2 threads (%.0f GB/s on 2 threads, f32 weights):"
          % (args.local_bw / 1e9))
    print("| model | 1 x 2 ms/token | transport | comm ms/token | per layer us | 2 x 1 ms/token | overhead |")
    print("|---|---|---|---|---|---|---|")
    for name in ("gqa-100m", "TinyLlama-1.1B"):
        s = SHAPES[name]
        mem = rank_bytes(s, 1, 32, args.context, 4) / args.local_bw
        for btl, (alpha, beta) in fits.items():
            c = comm_time(s, 2, alpha, beta)
            print("| %s | %.2f | %s | %.3f | %.1f | %.2f | %.1f%% |" % (
                name, mem * 1e3, btl, c * 1e3, c / s["layers"] * 1e6, (mem + c) * 1e3, 100 * c / mem))


def dllama(args):
    """distributed-llama's Llama-2-70B Q40 figures against the model, the bandwidth fitted to 1 VM."""
    s = SHAPES["Llama-2-70B"]
    published = {1: 910, 2: 501, 4: 293}
    bw = rank_bytes(s, 1, 4.5, args.context, 2) / (published[1] / 1e3)
    print("\ndistributed-llama, Llama-2-70B Q40 (4.5 bits) on 1/2/4 cloud VMs; bandwidth fitted to the 1-VM figure: %.1f GB/s"
          % (bw / 1e9))
    print("| VMs | published ms | memory ms | model @10 Gbit/s | model @100 Gbit/s | published - memory |")
    print("|---|---|---|---|---|---|")
    for n, ms in published.items():
        mem = rank_bytes(s, n, 4.5, args.context, 2) / bw
        row = ["%d" % n, "%d" % ms, "%.0f" % (mem * 1e3)]
        row += ["%.0f" % ((mem + comm_time(s, n, a, b)) * 1e3) for _, a, b in NETWORKS]
        row.append("%.0f ms" % (ms - mem * 1e3))
        print("| " + " | ".join(row) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bw", type=float, default=25, help="GB/s one machine reads (a cloud VM: 20-25)")
    p.add_argument("--local-bw", type=float, default=57, help="GB/s this machine reads on 2 threads")
    p.add_argument("--memory", type=float, default=24, help="GB of memory per machine (summary: * past it)")
    p.add_argument("--context", type=int, default=256, help="positions in the KV cache")
    p.add_argument("--block", type=int, default=32, help="values per block of the 4.5-bit type (q4_0 32, q4_k 256)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--summary", action="store_true", help="one line per model, type and network")
    p.add_argument("--calib", help="allreduce_bench output (make bench-tp) to fit this machine's alpha/beta")
    p.add_argument("--models", nargs="+", default=["TinyLlama-1.1B", "Llama-3-8B", "Llama-2-70B"])
    args = p.parse_args()
    if min(args.ranks) < 1 or min(args.bw, args.local_bw, args.memory) <= 0 or args.context < 0 or args.block < 1:
        p.error("--ranks and --block want whole numbers >= 1, --bw, --local-bw and --memory positive numbers")
    args.local_bw *= 1e9
    print("# assumptions: %.0f GB/s per machine; networks %s; activations f32; KV cache f16 at context %d;"
          % (args.bw, ", ".join("%s alpha %.0f us" % (n, a * 1e6) for n, a, _ in NETWORKS), args.context))
    print("# allreduce by recursive doubling or ring, whichever is quicker; compute never waits on the network")
    fits = calibrate(args.calib) if args.calib else LOOPBACK
    for name in args.models:
        if name not in SHAPES:
            sys.exit("tp_model.py: unknown model %s (known: %s)" % (name, ", ".join(SHAPES)))
    if args.summary:
        summary(args)
    else:
        for name in args.models:
            for bits in (4.5, 16):
                table(name, SHAPES[name], bits, args.bw * 1e9, args)
    dllama(args)
    this_machine(args, fits)


SHAPES = shapes()
if __name__ == "__main__":
    main()

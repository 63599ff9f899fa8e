#!/usr/bin/python3
"""train_fortune.py: train a small Llama-style model on the fortune corpus.

Builds everything in examples/fortune/ (and examples/fortune.gqa) from the
Debian `fortunes` and `fortunes-min` packages (/usr/share/games/fortunes):

    tokenizer.model   SentencePiece BPE, 512 pieces, byte fallback, Llama ids
    tokenizer.bin     the same vocabulary in llama2.c's tokenizer.bin format
    fortune.bin       weights in llama2.c's legacy (version 0) checkpoint format
    eval.txt          held-out validation fortunes, separated by "%" lines
    reference.json    torch outputs of fortune.bin, to check a C implementation
    README.md         the recipe, the numbers and samples of this run
    ../fortune.gqa    the model description for gqac

The model is a plain Llama decoder (RMSNorm, RoPE on adjacent pairs, SwiGLU,
tied embeddings, no biases) with n_kv_heads == n_heads: it is the
multi-head original that a later tool turns into GQA by pooling K/V heads.

Run with Debian's python (python3-torch, python3-sentencepiece, python3-numpy):

    /usr/bin/python3 tools/train_fortune.py --minutes 30     # train + export
    /usr/bin/python3 tools/train_fortune.py --steps 2400     # fixed step count
    /usr/bin/python3 tools/train_fortune.py --sample         # only sample fortune.bin

With --minutes the step count is sized from the measured speed of the first
steps and printed; rerunning with --steps N repeats that run exactly (same
seeds, same batches) on the same machine and torch build.
"""
import argparse
import json
import math
import os
import random
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fortune_corpus import MAX_CHARS, SEED, load_corpus  # noqa: E402  (the corpus, shared)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "examples", "fortune")
GQA = os.path.join(ROOT, "examples", "fortune.gqa")

# The model's shape (also written into examples/fortune.gqa).
SHAPE = dict(vocab=512, dim=128, layers=4, heads=8, kv_heads=8, hidden=352, context=256)
ROPE_THETA = 10000.0
NORM_EPS = 1e-5
BOS, EOS = 1, 2
PROMPT = "The meaning of life"


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- fast sgemm
#
# Debian's torch 1.13 calls the Fortran BLAS sgemm_, and Debian installs the
# netlib reference BLAS by default: about 4 GFLOP/s here, which makes this run
# 15x slower than it needs to be.  torch's own dependency libdnnl (oneDNN) has
# a fast row-major sgemm, so, when a C compiler is at hand, build a 10-line
# sgemm_ that forwards to it and restart under LD_PRELOAD.  The results agree
# with the reference BLAS to float rounding; --no-fast-gemm turns it off.

SHIM_C = r"""
#include <stdint.h>
extern int dnnl_sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);
/* Column-major C = op(A) op(B) is row-major C^T = op(B)^T op(A)^T. */
void sgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k,
            const float *alpha, const float *a, const int *lda, const float *b,
            const int *ldb, const float *beta, float *c, const int *ldc) {
    dnnl_sgemm(*tb, *ta, *n, *m, *k, *alpha, b, *ldb, a, *lda, *beta, c, *ldc);
}
"""
DNNL = "/usr/lib/x86_64-linux-gnu/libdnnl.so.2"


def use_fast_gemm():
    """Re-exec this script with the oneDNN sgemm_ preloaded, if possible."""
    if os.environ.get("TRAIN_FORTUNE_SHIM") or not os.path.exists(DNNL):
        return
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix="train_fortune_")
    src, lib = os.path.join(d, "sgemm_dnnl.c"), os.path.join(d, "sgemm_dnnl.so")
    with open(src, "w") as f:
        f.write(SHIM_C)
    r = subprocess.run(["cc", "-O2", "-shared", "-fPIC", src, "-o", lib, DNNL],
                       capture_output=True, text=True)
    if r.returncode != 0:
        log("fast sgemm: could not build the shim, using the default BLAS:\n" + r.stderr)
        return
    env = dict(os.environ, TRAIN_FORTUNE_SHIM=lib,
               LD_PRELOAD=(lib + " " + os.environ.get("LD_PRELOAD", "")).strip())
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


# ---------------------------------------------------------------- tokenizer

def train_tokenizer(train, path_prefix):
    import sentencepiece as spm
    txt = path_prefix + ".train.txt"
    with open(txt, "w", encoding="utf-8") as f:
        for t in train:
            f.write(t + "\n")      # SentencePiece reads one sentence per line
    spm.SentencePieceTrainer.train(
        input=txt, model_prefix=path_prefix, model_type="bpe",
        vocab_size=SHAPE["vocab"], byte_fallback=True, character_coverage=1.0,
        split_digits=True, add_dummy_prefix=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=BOS, eos_id=EOS, pad_id=-1,
        unk_surface=r" \342\201\207 ", max_sentence_length=4096,
        input_sentence_size=0, shuffle_input_sentence=False,
        num_threads=1, seed_sentencepiece_size=1000000)
    os.remove(txt)
    os.remove(path_prefix + ".vocab")
    return load_sp(path_prefix + ".model")


def load_sp(path):
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=path)


def export_tokenizer_bin(sp, path):
    """llama2.c's tokenizer.py export, little-endian."""
    tokens, scores = [], []
    for i in range(sp.get_piece_size()):
        t = sp.id_to_piece(i)
        if i == sp.bos_id():
            t = "\n<s>\n"
        elif i == sp.eos_id():
            t = "\n</s>\n"
        tokens.append(t.replace("\u2581", " ").encode("utf-8"))
        scores.append(sp.get_score(i))
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(t) for t in tokens)))
        for b, s in zip(tokens, scores):
            f.write(struct.pack("<fi", s, len(b)))
            f.write(b)


def encode(sp, text):
    return [BOS] + sp.encode(text) + [EOS]


# ---------------------------------------------------------------- model

class RMSNorm(nn.Module):
    def __init__(self, dim, eps=NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_angles(head_dim, n, theta=ROPE_THETA, dtype=torch.float32):
    """(n, head_dim/2) angles: position t times theta^(-2i/head_dim)."""
    i = torch.arange(0, head_dim, 2, dtype=dtype)[: head_dim // 2]
    freqs = 1.0 / (theta ** (i / head_dim))
    return torch.outer(torch.arange(n, dtype=dtype), freqs)


def at_least_f32(x):
    """x in float32, or float64 if it is (tools/train_reference.py's double run)."""
    return x if x.dtype == torch.float64 else x.float()


def apply_rope(x, cos, sin):
    """x: (B, T, H, hd); rotates the adjacent pairs (2i, 2i+1) as Meta's Llama."""
    xr = at_least_f32(x).reshape(*x.shape[:-1], -1, 2)
    a, b = xr[..., 0], xr[..., 1]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, dim, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, dim // heads
        self.wq = nn.Linear(dim, heads * self.hd, bias=False)
        self.wk = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wo = nn.Linear(heads * self.hd, dim, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.heads, self.hd)
        k = self.wk(x).view(B, T, self.kv_heads, self.hd)
        v = self.wv(x).view(B, T, self.kv_heads, self.hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv_heads != self.heads:  # GQA: each KV head serves a group
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd) + mask[:T, :T]
        y = F.softmax(at_least_f32(att), dim=-1).type_as(q) @ v
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.attention_norm = RMSNorm(s["dim"])
        self.attention = Attention(s["dim"], s["heads"], s["kv_heads"])
        self.ffn_norm = RMSNorm(s["dim"])
        self.feed_forward = FeedForward(s["dim"], s["hidden"])

    def forward(self, x, cos, sin, mask):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        self.tok_embeddings = nn.Embedding(s["vocab"], s["dim"])
        self.layers = nn.ModuleList(Block(s) for _ in range(s["layers"]))
        self.norm = RMSNorm(s["dim"])
        self.output = nn.Linear(s["dim"], s["vocab"], bias=False)
        self.output.weight = self.tok_embeddings.weight          # tied
        ang = rope_angles(s["dim"] // s["heads"], s["context"])
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        mask = torch.full((s["context"], s["context"]), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)
        self.apply(self._init)
        for n, p in self.named_parameters():   # GPT-2 style scaled residual init
            if n.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * s["layers"]))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.tok_embeddings(idx)
        for layer in self.layers:
            x = layer(x, self.cos[:T], self.sin[:T], self.mask)
        logits = self.output(self.norm(x))
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


# ---------------------------------------------------------------- checkpoint

def bin_tensors(m):
    """The legacy llama2.c tensors in file order, as (name, tensor)."""
    L, s = m.layers, m.s
    hd = s["dim"] // s["heads"]
    ang = rope_angles(hd, s["context"])
    return [
        ("token_embedding", m.tok_embeddings.weight),
        ("rms_att", torch.stack([l.attention_norm.weight for l in L])),
        ("wq", torch.stack([l.attention.wq.weight for l in L])),
        ("wk", torch.stack([l.attention.wk.weight for l in L])),
        ("wv", torch.stack([l.attention.wv.weight for l in L])),
        ("wo", torch.stack([l.attention.wo.weight for l in L])),
        ("rms_ffn", torch.stack([l.ffn_norm.weight for l in L])),
        ("w1", torch.stack([l.feed_forward.w1.weight for l in L])),
        ("w2", torch.stack([l.feed_forward.w2.weight for l in L])),
        ("w3", torch.stack([l.feed_forward.w3.weight for l in L])),
        ("rms_final", m.norm.weight),
        ("freq_cis_real", ang.cos()),
        ("freq_cis_imag", ang.sin()),
    ]


def header(s):
    return struct.pack("<7i", s["dim"], s["hidden"], s["layers"], s["heads"],
                       s["kv_heads"], s["vocab"], s["context"])   # vocab > 0: tied


def export_bin(m, path):
    with open(path, "wb") as f:
        f.write(header(m.s))
        for _, t in bin_tensors(m):
            f.write(t.detach().cpu().contiguous().numpy().astype("<f4").tobytes())
    n = sum(t.numel() for _, t in bin_tensors(m))
    assert os.path.getsize(path) == 28 + 4 * n, "checkpoint size"
    return n


def load_bin(path):
    """A Llama (kv_heads may differ from heads) with the weights of a legacy .bin."""
    with open(path, "rb") as f:
        dim, hidden, layers, heads, kv, vocab, ctx = struct.unpack("<7i", f.read(28))
        data = np.frombuffer(f.read(), dtype="<f4")
    assert vocab > 0, "only tied checkpoints"
    s = dict(vocab=vocab, dim=dim, layers=layers, heads=heads, kv_heads=kv, hidden=hidden,
             context=ctx)
    m = Llama(s)
    want = sum(t.numel() for _, t in bin_tensors(m))
    assert data.size == want, f"{path}: {data.size} floats of weights, want {want}"
    w = torch.from_numpy(data.copy())
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        t = w[at:at + n].view(*shape)
        at += n
        return t
    with torch.no_grad():
        m.tok_embeddings.weight.copy_(take(vocab, dim))
        hd = dim // heads
        per_layer = [
            ("attention_norm.weight", (dim,)), ("attention.wq.weight", (heads * hd, dim)),
            ("attention.wk.weight", (kv * hd, dim)), ("attention.wv.weight", (kv * hd, dim)),
            ("attention.wo.weight", (dim, heads * hd)), ("ffn_norm.weight", (dim,)),
            ("feed_forward.w1.weight", (hidden, dim)), ("feed_forward.w2.weight", (dim, hidden)),
            ("feed_forward.w3.weight", (hidden, dim)),
        ]
        params = dict(m.named_parameters())
        for name, shape in per_layer:
            t = take(layers, *shape)
            for i in range(layers):
                params[f"layers.{i}.{name}"].copy_(t[i])
        m.norm.weight.copy_(take(dim))
    m.eval()
    return m


# ---------------------------------------------------------------- training

def make_stream(sp, fortunes):
    ids = []
    for t in fortunes:
        ids += encode(sp, t)
    return torch.tensor(ids, dtype=torch.long)


def get_batch(stream, batch, T, gen):
    ix = torch.randint(len(stream) - T - 1, (batch,), generator=gen)
    x = torch.stack([stream[i:i + T] for i in ix])
    y = torch.stack([stream[i + 1:i + T + 1] for i in ix])
    return x, y


@torch.no_grad()
def stream_loss(model, stream, T, max_windows=None, batch=16):
    """Mean next-token loss over consecutive non-overlapping windows."""
    model.eval()
    n = (len(stream) - 1) // T
    if max_windows:
        n = min(n, max_windows)
    tot, cnt = 0.0, 0
    for b in range(0, n, batch):
        idx = range(b, min(n, b + batch))
        x = torch.stack([stream[i * T:i * T + T] for i in idx])
        y = torch.stack([stream[i * T + 1:i * T + T + 1] for i in idx])
        _, loss = model(x, y)
        tot += loss.item() * y.numel()
        cnt += y.numel()
    model.train()
    return tot / cnt


@torch.no_grad()
def fortune_nll(model, sp, fortunes):
    """Per-fortune scoring as eval.txt is meant to be used: BOS + ids + EOS,
    predicting every token after BOS.  Returns (mean nll per token, tokens)."""
    model.eval()
    tot, cnt = 0.0, 0
    for t in fortunes:
        ids = torch.tensor(encode(sp, t))[None]
        ids = ids[:, : model.s["context"] + 1]
        logits = model(ids[:, :-1])
        tot += F.cross_entropy(logits[0], ids[0, 1:], reduction="sum").item()
        cnt += ids.shape[1] - 1
    return tot / cnt, cnt


def lr_at(step, steps, peak, warmup, floor):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, steps - warmup))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * p))


def train(args, train_stream, val_stream):
    torch.manual_seed(SEED)
    model = Llama(SHAPE)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters ({n_params / 1e6:.3f} M), shape {SHAPE}")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(SEED)
    T, B = SHAPE["context"], args.batch
    steps = args.steps                   # None: sized from the speed of the first steps
    budget = args.minutes * 60 if args.minutes else None
    t0 = time.time()
    history = []
    step, probe = 0, 20
    eval_windows = args.eval_windows
    while steps is None or step < steps:
        total = steps if steps is not None else 10 ** 9
        lr = lr_at(step, total if steps is not None else args.probe_steps_guess,
                   args.lr, args.warmup, args.lr * 0.05)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = get_batch(train_stream, B, T, gen)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if steps is None and step == probe:
            # size the run: time per step (plus evaluation overhead) into the budget
            per = (time.time() - t0) / probe
            te = time.time()
            stream_loss(model, val_stream, T, eval_windows)
            per_eval = time.time() - te
            left = budget - (time.time() - t0)
            steps_left = int(left / (per + per_eval / args.eval_every) * 0.97)
            steps = probe + max(0, steps_left)
            log(f"speed: {per:.3f} s/step, eval {per_eval:.1f} s; "
                f"sizing the run to {steps} steps for {args.minutes} minutes "
                f"(rerun with --steps {steps} to repeat it)")
        if step % args.log_every == 0 or step == 1:
            log(f"step {step:5d}/{steps or '?'} lr {lr:.2e} loss {loss.item():.4f} "
                f"{time.time() - t0:7.1f}s")
        if step % args.eval_every == 0 or (steps is not None and step == steps):
            tl = stream_loss(model, train_stream, T, eval_windows)
            vl = stream_loss(model, val_stream, T, eval_windows)
            history.append((step, tl, vl))
            log(f"eval step {step}: train {tl:.4f} val {vl:.4f} (ppl {math.exp(vl):.2f}) "
                f"{time.time() - t0:7.1f}s")
        if budget and time.time() - t0 > budget * 1.25:
            log(f"stopping early at step {step}: over the time budget")
            break
    return model, n_params, step, time.time() - t0, history


# ---------------------------------------------------------------- sampling

@torch.no_grad()
def generate(model, ids, n, temperature=0.0, gen=None, stop_eos=True):
    ids = list(ids)
    out = []
    for _ in range(n):
        x = torch.tensor(ids[-model.s["context"]:])[None]
        logits = model(x)[0, -1].float()
        if temperature == 0:
            nxt = int(torch.argmax(logits))
        else:
            p = F.softmax(logits / temperature, dim=-1)
            nxt = int(torch.multinomial(p, 1, generator=gen))
        if stop_eos and nxt in (EOS, BOS):
            break
        ids.append(nxt)
        out.append(nxt)
    return out


def reference(model, sp, eval_fortunes):
    prompt = [BOS] + sp.encode(PROMPT)
    with torch.no_grad():
        logits = model(torch.tensor(prompt)[None])[0, -1].float()
    top = torch.topk(logits, 5)
    greedy = generate(model, prompt, 20, stop_eos=False)
    nll, ntok = fortune_nll(model, sp, eval_fortunes)
    return {
        "model": "examples/fortune/fortune.bin (f32, legacy llama2.c format, tied)",
        "tokenizer": "examples/fortune/tokenizer.model",
        "prompt": PROMPT,
        "prompt_ids": prompt,
        "last_position_top5": {"ids": top.indices.tolist(),
                               "logits": [round(v, 6) for v in top.values.tolist()],
                               "pieces": [sp.id_to_piece(i) for i in top.indices.tolist()]},
        "greedy_20_ids": greedy,
        "greedy_20_text": sp.decode(greedy),
        "eval_txt": {"fortunes": len(eval_fortunes), "tokens_scored": ntok,
                     "scoring": "each fortune as BOS + ids + EOS, every token after BOS predicted",
                     "mean_nll": round(nll, 6), "perplexity": round(math.exp(nll), 4)},
    }


def samples(model, sp, prompts, temperature, seed, n=120):
    gen = torch.Generator().manual_seed(seed)
    res = []
    for p in prompts:
        ids = [BOS] + (sp.encode(p) if p else [])
        out = generate(model, ids, n, temperature, gen)
        res.append(sp.decode(ids[1:] + out))
    return res


SAMPLE_PROMPTS = ["The meaning of life", "", "A computer", "Q: What", "You will"]


def do_sample(path_bin, path_sp, eval_fortunes=None):
    model = load_bin(path_bin)
    sp = load_sp(path_sp)
    greedy = samples(model, sp, SAMPLE_PROMPTS, 0.0, SEED)
    warm = samples(model, sp, SAMPLE_PROMPTS + ["", ""], 0.8, SEED)
    for tag, ss in (("greedy", greedy), ("temperature 0.8", warm)):
        for s in ss:
            log(f"--- {tag}:\n{s}")
    return model, sp, greedy, warm


# ---------------------------------------------------------------- outputs

def write_gqa(n_params, val_loss, minutes):
    s = SHAPE
    text = f'''# A small real model: a Llama-style decoder trained on the Debian fortune
# corpus (fortunes + fortunes-min) by tools/train_fortune.py in about
# {minutes:.0f} minutes on 2 CPU cores; {n_params / 1e6:.2f} M parameters, validation loss
# {val_loss:.3f} (perplexity {math.exp(val_loss):.1f}) with its 512-piece SentencePiece BPE
# tokenizer.  Weights, tokenizer and a torch reference are in examples/fortune/.
# It is multi-head (kv_heads = heads): the original that GQA variants
# are pooled from.
model "fortune" {{
    vocab   = {s["vocab"]}
    dim     = {s["dim"]}
    layers  = {s["layers"]}
    context = {s["context"]}
    tie_embeddings = true

    attention {{
        heads      = {s["heads"]}
        kv_heads   = {s["kv_heads"]}
        head_dim   = {s["dim"] // s["heads"]}
        rope_theta = {ROPE_THETA}
    }}

    ffn swiglu {{
        hidden = {s["hidden"]}
    }}

    norm rmsnorm {{
        eps = 1e-5
    }}

    dtype {{
        weights  = f32
        kv_cache = f32
    }}
}}
'''
    with open(GQA, "w") as f:
        f.write(text)


def write_eval(val, path, max_fortunes=200, max_bytes=40000):
    chosen, size = [], 0
    for t in val:
        b = len((t + "\n%\n").encode("utf-8"))
        if len(chosen) == max_fortunes or size + b > max_bytes:
            break
        chosen.append(t)
        size += b
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n%\n".join(chosen) + "\n")
    return chosen


def write_readme(info):
    g = "\n\n".join("    " + s.replace("\n", "\n    ") for s in info["greedy"])
    w = "\n\n".join("    " + s.replace("\n", "\n    ") for s in info["warm"])
    text = f"""# fortune: a small Llama-style model trained on fortune cookies

A real (if small) trained model for gqac: a decoder with the Llama architecture
(RMSNorm, RoPE on adjacent pairs with theta 10000, SwiGLU, tied embeddings, no
biases), multi-head (`kv_heads = heads = 8`), trained from scratch on the Debian
fortune corpus.  `../fortune.gqa` describes it; a GQA variant is made from it by
mean-pooling its K/V heads.

| file | what |
|---|---|
| `fortune.bin` | weights, llama2.c legacy (version 0) format, f32, tied classifier ({info["bin_bytes"]} bytes = 28 + 4 x {info["n_floats"]}) |
| `tokenizer.model` | SentencePiece BPE, 512 pieces, byte fallback, unk=0 bos=1 eos=2 |
| `tokenizer.bin` | the same vocabulary in llama2.c's `tokenizer.bin` format |
| `eval.txt` | {info["n_eval"]} held-out validation fortunes, separated by lines holding only `%` |
| `reference.json` | torch outputs of `fortune.bin` for the prompt "{PROMPT}": prompt ids, top-5 last-position logits, 20 greedy ids, eval.txt perplexity |

## Recipe

    /usr/bin/python3 tools/train_fortune.py --steps {info["steps"]}

(`--minutes 30` sizes the step count to the machine instead; this run was sized
that way and took {info["train_s"] / 60:.1f} minutes of training on 2 CPU threads.)
`/usr/bin/python3` is Debian's python with python3-torch {torch.__version__},
python3-sentencepiece and python3-numpy.

- Corpus: the Debian packages `fortunes` and `fortunes-min`, the text files in
  `/usr/share/games/fortunes` ({info["n_files"]} files; no offensive files are
  installed, `ascii-art` is left out).  Overstrikes and control characters are
  removed, tabs expanded, lines right-stripped, fortunes of at most {MAX_CHARS} characters
  kept and exact duplicates dropped: {info["n_train"] + info["n_val"]} fortunes, shuffled with seed
  {SEED} and split 95/5 by fortune ({info["n_train"]} train, {info["n_val"]} validation).
- Tokenizer: SentencePiece BPE trained on the training fortunes: vocab 512,
  byte fallback, character coverage 1.0, split digits, dummy prefix, identity
  normalization, extra whitespace kept (a newline inside a fortune becomes the
  byte piece `<0x0A>`).
- Token stream: each fortune as BOS + ids + EOS, concatenated:
  {info["train_tokens"]} training tokens, {info["val_tokens"]} validation tokens.
- Model: vocab 512, dim 128, 4 layers, 8 heads of 16, 8 KV heads, SwiGLU hidden
  352, context 256: {info["n_params"]} parameters.
- Training: AdamW (betas 0.9/0.95, weight decay {info["wd"]} on matrices), peak lr
  {info["lr"]} with {info["warmup"]} warmup steps and cosine decay to 5%, batch
  {info["batch"]} x 256 tokens sampled at random offsets of the stream, gradient
  clipping 1.0, {info["steps"]} steps ({info["steps"] * info["batch"] * 256 / 1e6:.1f} M tokens, about
  {info["steps"] * info["batch"] * 256 / info["train_tokens"]:.1f} epochs), seed {SEED}.

## Result

- final train loss {info["train_loss"]:.4f}, validation loss {info["val_loss"]:.4f}
  (perplexity {math.exp(info["val_loss"]):.2f} per token), over 256-token windows
  of the streams
- eval.txt, each fortune scored alone (BOS + ids + EOS): mean NLL
  {info["eval_nll"]:.4f}, perplexity {math.exp(info["eval_nll"]):.2f} over {info["eval_tokens"]} tokens

Loss curve (step, train, validation):

{chr(10).join(f"    {s:5d}  {a:.4f}  {b:.4f}" for s, a, b in info["history"])}

## Samples (torch, from fortune.bin)

Greedy:

{g}

Temperature 0.8 (seed {SEED}):

{w}
"""
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=None,
                    help="size the step count to this much training time (default 30)")
    ap.add_argument("--steps", type=int, default=None, help="train exactly this many steps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-windows", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--probe-steps-guess", type=int, default=2000,
                    help=argparse.SUPPRESS)  # schedule length during the 20 timing steps
    ap.add_argument("--no-fast-gemm", action="store_true",
                    help="keep the system BLAS (see use_fast_gemm)")
    ap.add_argument("--sample", action="store_true",
                    help="only load examples/fortune/fortune.bin and sample from it")
    args = ap.parse_args()
    if not args.no_fast_gemm:
        use_fast_gemm()
    log("sgemm: " + (os.environ.get("TRAIN_FORTUNE_SHIM") and "oneDNN via "
                     + os.environ["TRAIN_FORTUNE_SHIM"] or "system BLAS"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    random.seed(SEED)
    np.random.seed(SEED)
    os.makedirs(OUT, exist_ok=True)
    p_bin, p_sp = os.path.join(OUT, "fortune.bin"), os.path.join(OUT, "tokenizer.model")

    if args.sample:
        model, sp, _, _ = do_sample(p_bin, p_sp)
        _, val, _ = load_corpus()
        ref = reference(model, sp, write_eval(val, "/dev/null"))
        log(json.dumps(ref, indent=1))
        return

    if args.steps is None and args.minutes is None:
        args.minutes = 30.0
    t_start = time.time()
    train_f, val_f, files = load_corpus()
    sp = train_tokenizer(train_f, os.path.join(OUT, "tokenizer"))
    export_tokenizer_bin(sp, os.path.join(OUT, "tokenizer.bin"))
    train_s, val_s = make_stream(sp, train_f), make_stream(sp, val_f)
    log(f"tokens: train {len(train_s)}, val {len(val_s)} "
        f"({sum(map(len, train_f)) / (len(train_s) - 2 * len(train_f)):.2f} chars/token)")

    model, n_params, steps, train_secs, history = train(args, train_s, val_s)
    n_floats = export_bin(model, p_bin)
    bin_bytes = os.path.getsize(p_bin)
    log(f"wrote {p_bin}: {bin_bytes} bytes = 28 + 4 x {n_floats}")

    # Everything below is computed from the exported file, not the trained module.
    model = load_bin(p_bin)
    full_train = stream_loss(model, train_s, SHAPE["context"], 400)
    full_val = stream_loss(model, val_s, SHAPE["context"])
    log(f"final (from fortune.bin): train loss {full_train:.4f}, val loss {full_val:.4f}, "
        f"val perplexity {math.exp(full_val):.2f}")
    eval_f = write_eval(val_f, os.path.join(OUT, "eval.txt"))
    ref = reference(model, sp, eval_f)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    log(f"eval.txt: {len(eval_f)} fortunes, perplexity {ref['eval_txt']['perplexity']}")
    log(f"reference: prompt {ref['prompt_ids']} greedy {ref['greedy_20_text']!r}")
    _, _, greedy, warm = do_sample(p_bin, p_sp)
    write_gqa(n_params, full_val, train_secs / 60)
    write_readme(dict(
        bin_bytes=bin_bytes, n_floats=n_floats, n_eval=len(eval_f), steps=steps,
        train_s=train_secs, n_files=len(files), n_train=len(train_f), n_val=len(val_f),
        train_tokens=len(train_s), val_tokens=len(val_s), n_params=n_params, wd=args.wd,
        lr=args.lr, warmup=args.warmup, batch=args.batch, train_loss=full_train,
        val_loss=full_val, eval_nll=ref["eval_txt"]["mean_nll"],
        eval_tokens=ref["eval_txt"]["tokens_scored"], history=history,
        greedy=greedy, warm=warm))
    log(f"done in {(time.time() - t_start) / 60:.1f} minutes")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""train_reference.py: PyTorch's loss, gradients and one AdamW step of the
fortune model on a fixed batch, for gqac's training tests.

    /usr/bin/python3 tools/train_reference.py      # writes examples/fortune/train_reference.json

The model is examples/fortune/fortune.bin as tools/train_fortune.py loads it;
the batch is 4 windows of 65 tokens of examples/fortune/eval.txt's token
stream (each fortune BOS + ids + EOS, examples/fortune/tokenizer.model).  The
loss and every table tensor's gradient are computed twice, in float64 and in
float32, then one AdamW step of the fortune recipe is taken in each.  The
JSON's "doc" key says what each field holds.  Deterministic: one thread and
the system BLAS (no sgemm shim: speed does not matter here).
"""
import json
import os
import random
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_fortune as tf  # noqa: E402  (the model, load_bin, encode; main() not run)

FORTUNE = os.path.join(tf.ROOT, "examples", "fortune")
OUT = os.path.join(FORTUNE, "train_reference.json")
BATCH, SEQ = 4, 64
OFFSETS = [0, 1000, 2000, 3000]
SAMPLES = 4            # random indices per tensor, plus the largest |gradient|
LR, BETAS, EPS, WD, CLIP = 2e-3, (0.9, 0.95), 1e-8, 0.1, 1.0

# gqac's tensor table: the llama2.c checkpoint order, one entry per layer.
# (gqac name, torch parameter name with {} for the layer)
PER_LAYER = [
    ("rms_att", "layers.{}.attention_norm.weight"), ("wq", "layers.{}.attention.wq.weight"),
    ("wk", "layers.{}.attention.wk.weight"), ("wv", "layers.{}.attention.wv.weight"),
    ("wo", "layers.{}.attention.wo.weight"), ("rms_ffn", "layers.{}.ffn_norm.weight"),
    ("w1", "layers.{}.feed_forward.w1.weight"), ("w2", "layers.{}.feed_forward.w2.weight"),
    ("w3", "layers.{}.feed_forward.w3.weight"),
]

DOC = {
    "how_made": "the script, torch version and recipe that made this file",
    "model": "the weights (llama2.c legacy f32 checkpoint, tied classifier)",
    "batch, seq, tokens": "tokens: batch rows of seq + 1 ids; row b's inputs are tokens[b][0 .. seq-1] "
                          "at positions 0 .. seq-1, its targets tokens[b][1 .. seq]",
    "tokens_source": "where the rows come from: windows of eval.txt's token stream at offsets",
    "n_params": "floats of the flat parameter array (weight_bytes / 4, RoPE tables included)",
    "loss": "mean next-token cross-entropy over the batch * seq predictions, f64 and f32 runs",
    "tensors": "gqac's table order (token_embedding, then per kind layers 0..L-1, rms_final); each: "
               "name, layer (-1: one for the model), rows, cols (row-major, cols = input width), "
               "offset (in floats, into the flat parameter array)",
    "tensors[].grad_norm": "L2 norm of d loss / d tensor (token_embedding: embedding + tied classifier)",
    "tensors[].samples": "index into the flattened row-major (rows, cols) tensor; grad: the gradient "
                         "there; before: the parameter before the step (f32, as in fortune.bin); "
                         "after: the parameter after the AdamW step; the last index is the "
                         "largest |grad| in the f64 run",
    "tensors[].update_norm": "L2 norm of (p_after - p_before) over the tensor, AdamW step",
    "adamw": "the one step: torch.optim.AdamW(lr, betas, eps), weight_decay on matrices "
             "(token_embedding, wq wk wv wo w1 w2 w3), 0 on rms_*; step 1 from m = v = 0, after "
             "clip_grad_norm_(max_norm): scale = min(1, max_norm / (grad_norm_total + 1e-6)) "
             "multiplies every gradient; grad_norm_total: the global L2 norm before clipping. "
             "At step 1 the update is lr * g / (|g| + eps) per element, about lr * sign(g), so "
             "update_norm mostly checks signs and decay: compare the samples too",
    "precision": "f64: model.double() with RoPE angles computed in float64; f32: the model as "
                 "train_fortune.py trains it (RoPE angles computed in float32). Their difference "
                 "is the float32 noise to expect of an f32 implementation",
}


def batch_tokens(sp):
    """The fixed batch: windows of SEQ + 1 tokens of eval.txt's stream."""
    with open(os.path.join(FORTUNE, "eval.txt"), encoding="utf-8") as f:
        text = f.read()
    assert text.endswith("\n")
    stream = []
    for doc in text[:-1].split("\n%\n"):
        stream += tf.encode(sp, doc)
    assert OFFSETS[-1] + SEQ + 1 <= len(stream), "eval.txt too short for the batch"
    return [stream[o:o + SEQ + 1] for o in OFFSETS], len(stream)


def table(model):
    """[(name, layer, torch parameter, offset in floats)] in gqac's table order."""
    params = dict(model.named_parameters())
    L = model.s["layers"]
    rows = [("token_embedding", -1, params["tok_embeddings.weight"])]
    for name, pat in PER_LAYER:
        rows += [(name, l, params[pat.format(l)]) for l in range(L)]
    rows.append(("rms_final", -1, params["norm.weight"]))
    out, at = [], 0
    for name, layer, p in rows:
        out.append((name, layer, p, at))
        at += p.numel()
    return out


def use_f64_rope(model):
    """Replace the float32-computed RoPE tables of a double model by float64 ones."""
    s = model.s
    ang = tf.rope_angles(s["dim"] // s["heads"], s["context"], dtype=torch.float64)
    model.cos, model.sin = ang.cos(), ang.sin()


def run(dtype, tokens, sample_idx):
    """Loss, gradients and one AdamW step in dtype; a dict of the results."""
    model = tf.load_bin(os.path.join(FORTUNE, "fortune.bin"))
    model.train()
    if dtype == torch.float64:
        model.double()
        use_f64_rope(model)
    tab = table(model)
    before = [p.detach().clone() for _, _, p, _ in tab]
    x = torch.tensor(tokens)[:, :-1]
    y = torch.tensor(tokens)[:, 1:]
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad.detach().clone() for _, _, p, _ in tab]

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    opt.step()
    scale = float(torch.clamp(CLIP / (total + 1e-6), max=1.0))  # as clip_grad_norm_ does

    tensors = []
    for (name, layer, p, _), b, g, idx in zip(tab, before, grads, sample_idx):
        flat_g, flat_p, flat_b = g.reshape(-1), p.detach().reshape(-1), b.reshape(-1)
        tensors.append(dict(
            grad_norm=float(g.double().norm()),
            update_norm=float((p.detach() - b).double().norm()),
            grad=[float(flat_g[i]) for i in idx],
            before=[float(flat_b[i]) for i in idx],
            after=[float(flat_p[i]) for i in idx],
            argmax=int(flat_g.abs().argmax())))
    return dict(loss=float(loss), total=float(total), scale=scale, tensors=tensors)


def sample_indices(model):
    """SAMPLES seeded random indices per tensor (the largest |grad| is added later)."""
    rng = random.Random(tf.SEED)
    return [sorted(rng.sample(range(p.numel()), SAMPLES)) for _, _, p, _ in table(model)]


def main():
    if len(sys.argv) != 1:
        print("usage: train_reference.py  (writes examples/fortune/train_reference.json)",
              file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    torch.manual_seed(tf.SEED)
    sp = tf.load_sp(os.path.join(FORTUNE, "tokenizer.model"))
    tokens, stream_len = batch_tokens(sp)
    model = tf.load_bin(os.path.join(FORTUNE, "fortune.bin"))
    tab = table(model)
    idx = sample_indices(model)
    # The largest |gradient| of the f64 run joins each tensor's samples.
    r64 = run(torch.float64, tokens, idx)
    idx = [i + [t["argmax"]] for i, t in zip(idx, r64["tensors"])]
    r64 = run(torch.float64, tokens, idx)
    r32 = run(torch.float32, tokens, idx)

    tensors = []
    for (name, layer, p, off), i, a, b in zip(tab, idx, r64["tensors"], r32["tensors"]):
        rows, cols = (p.shape[0], p.shape[1]) if p.dim() == 2 else (1, p.shape[0])
        tensors.append({
            "name": name, "layer": layer, "rows": rows, "cols": cols, "offset": off,
            "grad_norm": {"f64": a["grad_norm"], "f32": b["grad_norm"]},
            "update_norm": {"f64": a["update_norm"], "f32": b["update_norm"]},
            "samples": {"index": i, "grad_f64": a["grad"], "grad_f32": b["grad"],
                        "before": b["before"], "after_f64": a["after"], "after_f32": b["after"]},
        })
    s = model.s
    n_params = tab[-1][3] + tab[-1][2].numel() + 2 * s["context"] * (s["dim"] // s["heads"] // 2)
    ref = {
        "doc": DOC,
        "how_made": (f"tools/train_reference.py, torch {torch.__version__} (1 thread, system BLAS); "
                     "the fortune recipe of tools/train_fortune.py: AdamW lr 2e-3, betas (0.9, 0.95), "
                     "eps 1e-8, weight decay 0.1 on matrices and 0 on norms, clip_grad_norm_ 1.0"),
        "model": "examples/fortune/fortune.bin",
        "tokenizer": "examples/fortune/tokenizer.model",
        "batch": BATCH, "seq": SEQ,
        "tokens_source": f"examples/fortune/eval.txt's stream ({stream_len} tokens, each fortune "
                         f"BOS + ids + EOS), windows of seq + 1 at offsets {OFFSETS}",
        "tokens": tokens,
        "n_params": n_params,
        "loss": {"f64": r64["loss"], "f32": r32["loss"]},
        "adamw": {"lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS,
                  "weight_decay": WD, "step": 1, "clip_max_norm": CLIP,
                  "grad_norm_total": {"f64": r64["total"], "f32": r32["total"]},
                  "clip_scale": {"f64": r64["scale"], "f32": r32["scale"]}},
        "tensors": tensors,
    }
    assert n_params * 4 + 28 == os.path.getsize(os.path.join(FORTUNE, "fortune.bin"))
    with open(OUT, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    worst = max(abs(t["grad_norm"]["f32"] / t["grad_norm"]["f64"] - 1) for t in tensors)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes): loss f64 {r64['loss']:.10f} "
          f"f32 {r32['loss']:.10f}; grad norm total {r64['total']:.6f}; "
          f"worst f32/f64 grad-norm relative difference {worst:.2e}")


if __name__ == "__main__":
    main()

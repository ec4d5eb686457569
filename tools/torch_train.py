#!/usr/bin/python3
"""The papers' own bijection recipe in PyTorch: the time-to-accuracy reference for bench/.

A from-scratch PyTorch model of the architecture the authors' dense-checkpoint script trains
(experiments/jlens/train_dense_checkpoints.py in vishalmisra/bayesian-wind-tunnel): token and
position embeddings (nn.Embedding), pre-norm blocks of RMSNorm (eps 1e-5), causal attention with
separate bias-free Q/K/V/O projections, an MLP d -> 4d -> d with biases and exact GELU, a final
RMSNorm and a head tied to the token embedding; PyTorch's default initialisation; AdamW over every
parameter (weight decay on all of them, as torch.optim.AdamW(model.parameters()) does), linear
warmup from lr/warmup to lr, cosine to 0 at the last step, global-norm clipping. Sep-vocab bijection
sequences (keys 0..V-1 without replacement, values V..2V-1), cross-entropy on the value that follows
each key, over the whole vocabulary.

Every --eval-every steps it scores a fixed held-out set against the exact posterior (uniform over
the V - t unrevealed values at key t) and prints a JSON line:
  {"step", "train_s", "elapsed_s", "entropy_mae", "entropy_mae_renorm", "loss"}
train_s is the wall time spent training (evaluations excluded), the x axis of bench/'s frontier;
entropy_mae uses the full predictive distribution, entropy_mae_renorm the value slice renormalised
(the papers' and bwt's definitions, bits).

  /usr/bin/python3 tools/torch_train.py --steps 20000 --eval-every 1000 --threads 1
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = RMSNorm(dim)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.norm2 = RMSNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x, causal):
        B, T, C = x.shape
        hs = C // self.heads
        h = self.norm1(x)
        q, k, v = (w(h).view(B, T, self.heads, hs).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~causal[:T, :T], float("-inf")).softmax(-1)
        x = x + self.wo((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Model(nn.Module):
    def __init__(self, vocab, dim, layers, heads, max_t):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, dim)
        self.pos_emb = nn.Embedding(max_t, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = RMSNorm(dim)
        self.register_buffer("causal", torch.ones(max_t, max_t, dtype=torch.bool).tril())

    def forward(self, tokens):
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(tokens.shape[1]))[None]
        for b in self.blocks:
            x = b(x, self.causal)
        return self.norm(x) @ self.tok_emb.weight.t()  # the tied head


def sample(B, V, L, gen):
    """tokens (B, 2L-1) = k1, V+pi(k1), ..., kL; targets (B, L): the value after each key."""
    perm = torch.argsort(torch.rand(B, V, generator=gen), dim=1)
    keys = torch.argsort(torch.rand(B, V, generator=gen), dim=1)[:, :L]
    values = torch.gather(perm, 1, keys) + V
    seq = torch.stack((keys, values), dim=2).reshape(B, 2 * L)
    return seq[:, : 2 * L - 1], values


@torch.no_grad()
def evaluate(model, tokens, V, L):
    logits = model(tokens)[:, 0::2].double()  # the L key positions
    bayes = torch.log2(V - torch.arange(L, dtype=torch.float64))[None]
    logp = logits.log_softmax(-1)
    h_full = -(logp.exp() * logp).sum(-1) / math.log(2)
    logq = logits[..., V:2 * V].log_softmax(-1)
    h_slice = -(logq.exp() * logq).sum(-1) / math.log(2)
    return float((h_full - bayes).abs().mean()), float((h_slice - bayes).abs().mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--V", type=int, default=20)
    ap.add_argument("--L", type=int, default=19)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-seqs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=0, help="stop once training time passes this (0 = no limit)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = Model(2 * a.V, a.dim, a.layers, a.heads, 2 * a.L)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    gen = torch.Generator().manual_seed(a.seed)
    held_out, _ = sample(a.eval_seqs, a.V, a.L, torch.Generator().manual_seed(a.seed + 1000003))

    def lr_at(step):
        if step <= a.warmup:
            return a.lr * step / a.warmup
        return 0.5 * a.lr * (1 + math.cos(math.pi * (step - a.warmup) / max(a.steps - a.warmup, 1)))

    t0 = time.perf_counter()
    eval_s = 0.0
    for step in range(1, a.steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        tokens, targets = sample(a.batch, a.V, a.L, gen)
        logits = model(tokens)[:, 0::2]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        last = step == a.steps
        train_s = time.perf_counter() - t0 - eval_s
        over = a.max_seconds > 0 and train_s > a.max_seconds
        if step % a.eval_every == 0 or last or over:
            e0 = time.perf_counter()
            mae, mae_renorm = evaluate(model, held_out, a.V, a.L)
            print(json.dumps({"step": step, "train_s": train_s, "elapsed_s": e0 - t0, "entropy_mae": mae,
                              "entropy_mae_renorm": mae_renorm, "loss": float(loss)}), flush=True)
            eval_s += time.perf_counter() - e0
        if over:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())

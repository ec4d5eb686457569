#!/usr/bin/python3
"""PyTorch reference fixtures for bwt (tests/test_parity.c), in the manner of llm.c.

Builds the same models as bwt in PyTorch (the math of docs/checkpoint.md and src/models), fills them
with fixed weights, runs them on a fixed hand-made batch and writes, per model, one safetensors file
to tests/fixtures/ holding:

  param.<name>   every parameter under bwt's tensor name (F32, torch's shape)
  tokens         (B,T) I32        sup_pos (B,N) I32        targets (B,N) I32
  soft_targets   (B,N,K) F64, rows of a Dirichlet(1) draw
  logits         (B*N,K) F32, row b*N+j is position sup_pos[b,j] of sequence b
  loss           (1,) F64: mean cross-entropy against the hard targets
  loss_soft      (1,) F64: mean cross-entropy against the soft targets
  grad.<name>    gradient of `loss` for every parameter (F32)
  losses         (10,) F64: `loss` before each of 10 AdamW steps on the same batch
                 (torch.optim.AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.1 on
                 2-D tensors but Mamba's A_log, 0 on the rest; clip_grad_norm_(1.0) before each step; constant lr)

and the model config, batch sizes, seed and torch version as string metadata.

Weights: every matrix, embedding and bias is uniform in [-0.5, 0.5]; norm weights are uniform in
[0.5, 1.5] (so that a missing norm weight or bias shows). O(1) weights give O(1) gradients in every
tensor, including attention, which N(0, 0.02) weights would leave near zero.

Run with Debian's interpreter, which has torch and numpy:   /usr/bin/python3 tools/torch_reference.py [NAME...]
Only the standard library, numpy and torch are used; the safetensors writer is below.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
N_STEPS = 10
ADAM = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
CLIP = 1.0
EPS = 1e-5


# ----------------------------------------------------------------------------------------------
# Models. Module names are chosen so that named_parameters() gives bwt's tensor names, except
# nn.Embedding's "tok_emb.weight", which bwt calls "tok_emb" (see bwt_name).

class RMSNorm(nn.Module):
    """out = x / sqrt(mean(x²) + eps) * weight (torch 1.13 has no nn.RMSNorm)."""

    def __init__(self, C):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


def make_norm(kind, C):
    return RMSNorm(C) if kind == "rms" else nn.LayerNorm(C, eps=EPS)


class Attention(nn.Module):
    """Causal multi-head attention, separate Q/K/V/O projections with biases; head h owns channels
    [h·hs, (h+1)·hs); scale 1/sqrt(hs)."""

    def __init__(self, C, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(C, C) for _ in range(4))

    def forward(self, x):
        B, T, C = x.shape
        NH, hs = self.n_heads, C // self.n_heads
        q, k, v = (w(x).view(B, T, NH, hs).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.wo(y)


class FFN(nn.Module):
    """The residual branch fc2(gelu(fc1(norm(x)))), C → 4C → C, exact erf GELU."""

    def __init__(self, C, norm):
        super().__init__()
        self.norm = make_norm(norm, C)
        self.fc1 = nn.Linear(C, 4 * C)
        self.fc2 = nn.Linear(4 * C, C)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(self.norm(x)), approximate="none"))


class Block(nn.Module):
    def __init__(self, C, n_heads, norm):
        super().__init__()
        self.norm1 = make_norm(norm, C)
        self.attn = Attention(C, n_heads)
        self.mlp = FFN(C, norm)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(x)


class MLPBlock(nn.Module):
    def __init__(self, C, norm):
        super().__init__()
        self.mlp = FFN(C, norm)

    def forward(self, x):
        return x + self.mlp(x)


def scan_loop(u, delta, A, Bm, Cm):
    """The selective scan as the reference's sequential form: h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t u_t,
    y_t = C_t · h_t, one Python step per time step. u, delta (B,T,Di); A (Di,Ns); Bm, Cm (B,T,Ns)."""
    Bsz, T, Di = u.shape
    h = u.new_zeros(Bsz, Di, A.shape[1])
    ys = []
    for t in range(T):
        dt = delta[:, t].unsqueeze(-1)  # (B,Di,1)
        h = torch.exp(dt * A) * h + dt * Bm[:, t].unsqueeze(1) * u[:, t].unsqueeze(-1)
        ys.append((h * Cm[:, t].unsqueeze(1)).sum(-1))
    return torch.stack(ys, dim=1)


def scan_parallel(u, delta, A, Bm, Cm):
    """The same scan vectorised over time: the recurrence h_t = a_t h_{t−1} + b_t as a Hillis–Steele
    prefix scan of the pairs (a, b), ⌈log2 T⌉ whole-tensor steps; every factor is a product of
    decays ≤ 1, so nothing overflows (a cumulative-sum form exp(S_t − S_s) would, for long T)."""
    a = torch.exp(delta.unsqueeze(-1) * A)  # (B,T,Di,Ns)
    b = (delta * u).unsqueeze(-1) * Bm.unsqueeze(2)
    T, off = u.shape[1], 1
    while off < T:
        b = torch.cat([b[:, :off], a[:, off:] * b[:, :-off] + b[:, off:]], dim=1)
        a = torch.cat([a[:, :off], a[:, off:] * a[:, :-off]], dim=1)
        off *= 2
    return (b * Cm.unsqueeze(2)).sum(-1)


def scan_chunked(u, delta, A, Bm, Cm, chunk=8):
    """The same scan in closed form within chunks of `chunk` steps, a Python loop over the chunks:
    with S_t = Σ_{r≤t} Δ_r A from the chunk's start, h_t = exp(S_t) (h_0 + Σ_{s≤t} exp(−S_s) b_s), two
    cumulative sums over whole tensors. Rounding stays relative to Σ|b_s| (the factors exp(S_t − S_s)
    are ≤ 1); exp(−S_s) itself overflows float32 once a chunk's decay exceeds e^88, i.e.
    max |Δ·A| > 11 at chunk 8, far above what training reaches here (softplus-initialised Δ ≤ 0.1)."""
    dA = delta.unsqueeze(-1) * A  # (B,T,Di,Ns), ≤ 0
    b = (delta * u).unsqueeze(-1) * Bm.unsqueeze(2)
    h0 = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for s in range(0, u.shape[1], chunk):
        S = dA[:, s:s + chunk].cumsum(1)
        hs = torch.exp(S) * (h0.unsqueeze(1) + (torch.exp(-S) * b[:, s:s + chunk]).cumsum(1))
        ys.append((hs * Cm[:, s:s + chunk].unsqueeze(2)).sum(-1))
        h0 = hs[:, -1]
    return torch.cat(ys, dim=1)


SCANS = {"loop": scan_loop, "parallel": scan_parallel, "chunked": scan_chunked}


class Mixer(nn.Module):
    """Mamba's mixer (Gu & Dao 2023; the reference module's names): in_proj (no bias) → x, z; causal
    depthwise conv1d with bias, SiLU; x_proj (no bias) → (dt, B, C); Δ = softplus(dt_proj(dt)) (the
    reference adds dt_proj's bias inside the scan, the same thing); y = scan + D·u; out_proj(y·SiLU(z)).
    conv1d.weight is held as bwt stores it, (Di, d_conv), torch's (Di, 1, d_conv) without the 1."""

    def __init__(self, C, Ns, K, expand, scan):
        super().__init__()
        Di, self.R, self.Ns, self.K, self.scan = expand * C, (C + 15) // 16, Ns, K, scan
        self.in_proj = nn.Linear(C, 2 * Di, bias=False)
        self.conv1d = nn.Module()
        self.conv1d.weight = nn.Parameter(torch.zeros(Di, K))
        self.conv1d.bias = nn.Parameter(torch.zeros(Di))
        self.x_proj = nn.Linear(Di, self.R + 2 * Ns, bias=False)
        self.dt_proj = nn.Linear(self.R, Di)
        self.A_log = nn.Parameter(torch.zeros(Di, Ns))
        self.A_log._no_weight_decay = True  # as the reference module marks it (and bwt does)
        self.D = nn.Parameter(torch.ones(Di))
        self.out_proj = nn.Linear(Di, C, bias=False)

    def forward(self, h):
        T = h.shape[1]
        x, z = self.in_proj(h).chunk(2, dim=-1)
        w = self.conv1d.weight.unsqueeze(1)  # (Di,1,K)
        x = F.conv1d(x.transpose(1, 2), w, self.conv1d.bias, padding=self.K - 1, groups=w.shape[0])
        u = F.silu(x[..., :T].transpose(1, 2))
        r, Bm, Cm = self.x_proj(u).split([self.R, self.Ns, self.Ns], dim=-1)
        delta = F.softplus(self.dt_proj(r))
        y = SCANS[self.scan](u, delta, -torch.exp(self.A_log), Bm, Cm) + self.D * u
        return self.out_proj(y * F.silu(z))


def clamped_scan(u, delta, A, Bm, Cm):
    """The reference repository's scan, a loop over time: decay exp(clamp(Δ·A, −20, 0)), update
    clamp(Δ·B·u, ±10), state clamp(h, ±100); no skip term. A is (Di, Ns)."""
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[-1])
    ys = []
    for t in range(u.shape[1]):
        dt = delta[:, t].unsqueeze(-1)  # (B, Di, 1)
        update = (dt * Bm[:, t].unsqueeze(1) * u[:, t].unsqueeze(-1)).clamp(-10, 10)
        h = (h * torch.exp((dt * A).clamp(-20, 0)) + update).clamp(-100, 100)
        ys.append((h * Cm[:, t].unsqueeze(1)).sum(-1))
    return torch.stack(ys, dim=1)


class SimplifiedMixer(Mixer):
    """The reference repository's "simplified Mamba" block (experiments/paper1_{bijection,hmm}/
    train_mamba.py), as bwt's --ssm-variant simplified: a rank-1 dt_proj, Δ = clamp(softplus, 1e-4, 10),
    A_log (Ns) shared by the channels with A = −exp(min(A_log, 5)), the clamped scan, then
    LayerNorm(scan) + D·u before the gate."""

    def __init__(self, C, Ns, K, expand, scan):
        super().__init__(C, Ns, K, expand, scan)
        Di, self.R = expand * C, 1
        self.x_proj = nn.Linear(Di, 1 + 2 * Ns, bias=False)
        self.dt_proj = nn.Linear(1, Di)
        self.A_log = nn.Parameter(torch.zeros(Ns))
        self.norm = nn.LayerNorm(Di)

    def forward(self, h):
        T = h.shape[1]
        x, z = self.in_proj(h).chunk(2, dim=-1)
        w = self.conv1d.weight.unsqueeze(1)
        x = F.conv1d(x.transpose(1, 2), w, self.conv1d.bias, padding=self.K - 1, groups=w.shape[0])
        u = F.silu(x[..., :T].transpose(1, 2))
        r, Bm, Cm = self.x_proj(u).split([1, self.Ns, self.Ns], dim=-1)
        delta = F.softplus(self.dt_proj(r)).clamp(1e-4, 10.0)
        A = -torch.exp(self.A_log.clamp(max=5.0)).expand(u.shape[2], -1)
        y = self.norm(clamped_scan(u, delta, A, Bm, Cm)) + self.D * u
        return self.out_proj(y * F.silu(z))


class MambaLayer(nn.Module):
    """A residual Mamba block: pre-norm (Gu & Dao's), or none (the simplified variant)."""

    def __init__(self, C, norm, Ns, K, expand, scan, simplified=False):
        super().__init__()
        self.norm = None if simplified else make_norm(norm, C)
        self.mixer = (SimplifiedMixer if simplified else Mixer)(C, Ns, K, expand, scan)

    def forward(self, x):
        return x + self.mixer(x if self.norm is None else self.norm(x))


class Model(nn.Module):
    """transformer, mlp (context-free), window_mlp, lstm or mamba, with bwt's readout: the supervised rows of
    the final stream, final norm, head (no bias; the token embedding when tied)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        C, V, K, T = cfg["d_model"], cfg["vocab"], cfg["n_classes"], cfg["max_T"]
        self.tok_emb = nn.Embedding(V, C)
        self.pos_emb = nn.Parameter(torch.zeros(T, C))
        if cfg["arch"] == "window_mlp":
            self.window = nn.Linear(cfg["window"] * C, C)
        if cfg["arch"] == "transformer":
            self.blocks = nn.ModuleList(Block(C, cfg["n_heads"], cfg["norm"]) for _ in range(cfg["n_layers"]))
        elif cfg["arch"] == "mamba":
            ssm = (cfg.get("ssm_state") or 16, cfg.get("ssm_conv") or 4, cfg.get("ssm_expand") or 2)
            self.layers = nn.ModuleList(MambaLayer(C, cfg["norm"], *ssm, cfg.get("scan", "loop"),
                                                   cfg.get("ssm_variant", 0) == 1)
                                        for _ in range(cfg["n_layers"]))
        elif cfg["arch"] == "lstm":
            self.lstm = nn.LSTM(C, C, num_layers=cfg["n_layers"], batch_first=True)
        else:
            self.blocks = nn.ModuleList(MLPBlock(C, cfg["norm"]) for _ in range(cfg["n_layers"]))
        self.norm_f = make_norm(cfg["norm"], C)
        if not cfg["tied_head"]:
            self.head = nn.Linear(C, K, bias=False)

    def forward(self, tokens, sup_pos):
        B, T = tokens.shape
        C = self.cfg["d_model"]
        if self.cfg["arch"] == "window_mlp":
            # Slot j holds the embedding of token t−j (zeros where t−j < 0), slots in order j = 0..w−1.
            e = self.tok_emb(tokens)
            slots = [F.pad(e, (0, 0, j, 0))[:, :T] for j in range(self.cfg["window"])]
            x = self.window(torch.cat(slots, dim=-1)) + self.pos_emb[:T]
        else:
            x = self.tok_emb(tokens) + self.pos_emb[:T]
        if self.cfg["arch"] == "lstm":
            x, _ = self.lstm(x)
        elif self.cfg["arch"] == "mamba":
            for layer in self.layers:
                x = layer(x)
        else:
            for block in self.blocks:
                x = block(x)
        rows = x[torch.arange(B).unsqueeze(1), sup_pos].reshape(-1, C)  # (B·N, C), row b·N + j
        h = self.norm_f(rows)
        w = self.tok_emb.weight if self.cfg["tied_head"] else self.head.weight
        return F.linear(h, w)


def bwt_name(torch_name):
    return "tok_emb" if torch_name == "tok_emb.weight" else torch_name


def decay_groups(model):
    """AdamW's weight decay on 2-D tensors, except those marked _no_weight_decay (Mamba's A_log)."""
    decay = [p for p in model.parameters() if p.dim() == 2 and not getattr(p, "_no_weight_decay", False)]
    ids = {id(p) for p in decay}
    return decay, [p for p in model.parameters() if id(p) not in ids]


def init_weights(model, rng):
    """Uniform [-0.5, 0.5] everywhere, norm weights uniform [0.5, 1.5]; drawn in named_parameters
    order from one numpy generator."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm_weight = name.endswith("weight") and p.dim() == 1
            lo = 0.5 if is_norm_weight else -0.5
            p.copy_(torch.from_numpy(rng.uniform(lo, lo + 1.0, size=tuple(p.shape)).astype(np.float32)))


# ----------------------------------------------------------------------------------------------
# safetensors writer: 8-byte little-endian header length, JSON header, raw little-endian bytes.

DTYPES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i4"): "I32", np.dtype("<i8"): "I64"}


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        data = arr.tobytes()
        header[name] = {"dtype": DTYPES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------

def make_batch(rng, B, T, N, V, K):
    tokens = rng.integers(0, V, size=(B, T)).astype(np.int32)
    # Increasing, distinct positions; every sequence its own, and the last position always in.
    sup_pos = np.stack([np.sort(np.append(rng.choice(T - 1, size=N - 1, replace=False), T - 1))
                        for _ in range(B)]).astype(np.int32)
    targets = rng.integers(0, K, size=(B, N)).astype(np.int32)
    soft = rng.dirichlet(np.ones(K), size=(B, N)).astype(np.float64)
    return tokens, sup_pos, targets, soft


def hard_loss(logits, targets):
    return F.cross_entropy(logits, targets.reshape(-1).long())


def adamw_steps(model, tok_t, pos_t, tgt_t):
    """N_STEPS AdamW steps with clipping on one batch: the loss before each and the clipped norms."""
    decay, no_decay = decay_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAM["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAM["lr"], betas=ADAM["betas"], eps=ADAM["eps"])
    losses, norms = [], []
    for _ in range(N_STEPS):
        step_loss = hard_loss(model(tok_t, pos_t), tgt_t)
        losses.append(step_loss.item())
        opt.zero_grad()
        step_loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)))
        opt.step()
    return losses, norms


def build(name, cfg, seed, B=4, N=4):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Model(cfg)
    init_weights(model, rng)
    tokens, sup_pos, targets, soft = make_batch(rng, B, cfg["max_T"], N, cfg["vocab"], cfg["n_classes"])
    tok_t, pos_t = torch.from_numpy(tokens).long(), torch.from_numpy(sup_pos).long()
    tgt_t = torch.from_numpy(targets)

    params0 = {bwt_name(n): p.detach().numpy().copy() for n, p in model.named_parameters()}

    # Forward, both losses, backward of the hard loss.
    logits = model(tok_t, pos_t)
    loss = hard_loss(logits, tgt_t)
    soft_rows = torch.from_numpy(soft).reshape(-1, cfg["n_classes"])
    loss_soft = -(soft_rows * F.log_softmax(logits.double(), -1)).sum(-1).mean()
    model.zero_grad()
    loss.backward()
    grads = {bwt_name(n): p.grad.detach().numpy().copy() for n, p in model.named_parameters()}
    logits_np = logits.detach().numpy().copy()

    # The same in float64, only to show the float32 noise floor of the reference itself.
    m64 = Model(cfg).double()
    m64.load_state_dict(model.state_dict())
    l64 = m64(tok_t, pos_t)
    hard_loss(l64, tgt_t).backward()
    g64 = {bwt_name(n): p.grad.numpy() for n, p in m64.named_parameters()}
    floor = max(abs(logits_np).max(), 1e-30)
    noise_logits = abs(logits_np - l64.detach().numpy()).max() / floor
    gmax = max(abs(g).max() for g in g64.values())
    noise_grad = max(abs(grads[k] - g64[k]).max() / abs(g64[k]).max()
                     for k in grads if abs(g64[k]).max() > 1e-6 * gmax)  # the key biases' gradient is 0
    # The same distance by test_parity.c's measure (relative to max(|g|, floor), floors 5% of the
    # tensor's largest gradient and 0.2% of the model's): the fixture's own float32 noise there.
    grad_noise = max(float((abs(grads[k] - g64[k]) / np.maximum(abs(g64[k]), max(5e-2 * abs(g64[k]).max(),
                                                                                  2e-3 * gmax, 1e-30))).max())
                     for k in grads)

    # Ten AdamW steps on the same batch, in float32 and (from the same start) in float64: a model
    # whose clamps flip under rounding (the simplified Mamba) makes the trajectory itself uncertain,
    # so the fixture says how many leading steps the two precisions agree on (bwt is held to those).
    m64 = Model(cfg).double()
    m64.load_state_dict(model.state_dict())
    losses, norms = adamw_steps(model, tok_t, pos_t, tgt_t)
    losses64, _ = adamw_steps(m64, tok_t, pos_t, tgt_t)
    steps_determinate = next((i for i, (a, b) in enumerate(zip(losses, losses64)) if abs(a - b) > 1e-4), N_STEPS)
    assert steps_determinate >= 5, f"{name}: float32 and float64 part after {steps_determinate} steps"

    tensors = {}
    for k, v in params0.items():
        tensors["param." + k] = v
    tensors["tokens"] = tokens
    tensors["sup_pos"] = sup_pos
    tensors["targets"] = targets
    tensors["soft_targets"] = soft
    tensors["logits"] = logits_np
    tensors["loss"] = np.array([loss.item()], dtype=np.float64)
    tensors["loss_soft"] = np.array([loss_soft.item()], dtype=np.float64)
    for k, v in grads.items():
        tensors["grad." + k] = v
    tensors["losses"] = np.array(losses, dtype=np.float64)

    meta = {k: (int(v) if isinstance(v, bool) else v) for k, v in cfg.items()}
    meta.update(B=B, T=cfg["max_T"], n_sup=N, seed=seed, steps=N_STEPS, steps_determinate=steps_determinate, grad_noise=f"{grad_noise:.3e}",
                init="uniform[-0.5,0.5]; norm weights uniform[0.5,1.5]",
                optimizer="AdamW lr=1e-3 betas=(0.9,0.999) eps=1e-8 wd=0.1 on 2-D tensors but A_log; clip 1.0",
                torch_version=torch.__version__, numpy_version=np.__version__,
                generator="tools/torch_reference.py")
    path = os.path.join(FIXTURE_DIR, name + ".safetensors")
    write_safetensors(path, tensors, meta)
    n_params = sum(v.size for v in params0.values())
    print(f"{name}: {n_params} params, loss {loss.item():.6f} -> {losses[-1]:.6f} in {N_STEPS} steps, "
          f"grad norm {norms[0]:.3g}; torch float32 vs float64: logits {noise_logits:.1e} of max|logit|, "
          f"grads {noise_grad:.1e} of a tensor's max|grad|; "
          f"{os.path.getsize(path)} bytes")


def check_parallel_scan():
    """The vectorised scans (bench/bench_torch.py --scan parallel|chunked) must be the loop's scan."""
    g = torch.Generator().manual_seed(7)
    Bsz, T, Di, Ns = 3, 39, 8, 5
    u, Bm, Cm = (torch.randn(Bsz, T, n, generator=g, dtype=torch.float64) for n in (Di, Ns, Ns))
    delta = F.softplus(torch.randn(Bsz, T, Di, generator=g, dtype=torch.float64))
    A = -torch.exp(torch.randn(Di, Ns, generator=g, dtype=torch.float64))
    a = scan_loop(u, delta, A, Bm, Cm)
    for name in ("parallel", "chunked"):
        err = float((a - SCANS[name](u, delta, A, Bm, Cm)).abs().max() / a.abs().max())
        print(f"{name} scan vs loop scan (float64): {err:.1e} of max|y|")
        assert err < 1e-12


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(FIXTURE_DIR, exist_ok=True)
    base = dict(vocab=12, n_classes=12, max_T=9, d_model=32, n_layers=2, n_heads=4, window=1)
    fixtures = [
        ("transformer_rms_untied", dict(base, arch="transformer", norm="rms", tied_head=False), 1),
        ("transformer_layernorm_tied", dict(base, arch="transformer", norm="layer", tied_head=True), 2),
        ("mlp", dict(base, arch="mlp", norm="layer", tied_head=False), 3),
        ("window_mlp", dict(base, arch="window_mlp", norm="rms", tied_head=False, window=3), 4),
        ("lstm", dict(base, arch="lstm", norm="layer", tied_head=False), 5),
        ("mamba", dict(base, arch="mamba", norm="rms", tied_head=False, ssm_state=8, ssm_conv=4, ssm_expand=2), 6),
        ("mamba_simplified", dict(base, arch="mamba", norm="layer", tied_head=False, ssm_state=8, ssm_conv=4,
                                  ssm_expand=2, ssm_variant=1), 7),
    ]
    only = sys.argv[1:]  # fixture names to rebuild; all of them when none is given
    for name, cfg, seed in fixtures:
        if not only or name in only:
            build(name, cfg, seed)
    if not only or "mamba" in only:
        check_parallel_scan()
    return 0


if __name__ == "__main__":
    sys.exit(main())

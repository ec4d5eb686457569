#!/usr/bin/env python3
"""Tiny random-weight checkpoints of each architecture bwt reads, in Hugging Face's file layout
(its tensor names and shapes: GPT-2's Conv1D c_attn.weight is (C, 3C)), with reference logits and
captured activations, for tests/test_lm.c.

The models here are written from the published architectures, not taken from any library:
  Llama: RMSNorm, rotate-half RoPE, grouped-query attention, SiLU-gated MLP; Llama 3's rope_scaling
    frequency rule; Mistral's sliding window (query t sees keys s with t - window < s <= t);
  GPT-2: learned positions, LayerNorm, Conv1D weights (x @ W + b), c_attn's output [q | k | v],
    tanh GELU, head tied to wte, names with or without "transformer.";
  GPT-NeoX: query_key_value's output per head [q_h | k_h | v_h], rotary on the first rotary_pct of
    each head, erf GELU, parallel residual x + attn(ln1 x) + mlp(ln2 x) or sequential, embed_out;
  Phi: one LayerNorm feeding attention and MLP in parallel, partial rotary, biased lm_head.
They compute in float64 from the weights exactly as stored (BF16/F16 weights widened), so what
tests/test_lm.c measures is bwt's own fp32 rounding.

Each fixture is a directory tests/fixtures/lm/NAME/ holding config.json, the weights
(model.safetensors, or two shards and model.safetensors.index.json) and reference.safetensors:
  tokens          I32 (T,)     the input sequence
  logits          F32 (T,V)    next-token logits at each position
  act.POINT       F32          activations under bwt's (TransformerLens's) names, batch dropped:
                               see docs/lm.md; attention scores hold -inf where masked. The Llama
                               fixtures hold the 17 POINTS, the others every point their model makes.

Fixtures: llama_gqa (4 query heads on 2 key/value heads, untied head), llama_mha (no grouping,
head_dim 6 != hidden/heads, tied embeddings, attention biases), llama3_scaled (rope_scaling llama3,
theta 5e5, sharded over two files), mistral_window (MistralForCausalLM, sliding_window 4 < T = 12),
llama_bf16 (BF16 weights, GQA), gpt2 ("transformer." names, the attn.bias mask buffers old exports
save), gpt2_noprefix (names without the prefix, F16 weights, n_inner null, eps 1e-3), neox_parallel
(rotary_pct 0.25, 80 embedding rows for tokens below 70: a vocabulary padded past the tokenizer's),
neox_sequential (use_parallel_residual false, rotary_pct 0.5, no attention biases), phi
(partial_rotary_factor 0.5).

Run with Debian's interpreter and python3-torch:  /usr/bin/python3 tools/lm_reference.py
"""
import json
import math
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "lm")
POINTS = ["hook_embed", "blocks.0.ln1.hook_normalized", "blocks.0.attn.hook_q", "blocks.0.attn.hook_k",
          "blocks.0.attn.hook_rot_q", "blocks.0.attn.hook_rot_k", "blocks.0.attn.hook_v",
          "blocks.1.attn.hook_attn_scores", "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_z",
          "blocks.0.hook_attn_out", "blocks.0.hook_resid_mid", "blocks.1.mlp.hook_pre",
          "blocks.1.mlp.hook_post", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post",
          "ln_final.hook_normalized"]


def rmsnorm(x, w, eps):
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return normed, normed * w


def inv_frequencies(cfg, rot):
    theta = cfg.get("rope_theta", 10000.0)
    freq = 1.0 / theta ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)
    rs = cfg.get("rope_scaling")
    if rs and rs["rope_type"] == "llama3":
        old = rs["original_max_position_embeddings"]
        lo, hi, factor = rs["low_freq_factor"], rs["high_freq_factor"], rs["factor"]
        out = []
        for f in freq.tolist():
            wavelen = 2 * math.pi / f
            if wavelen < old / hi:
                out.append(f)
            elif wavelen > old / lo:
                out.append(f / factor)
            else:
                s = (old / wavelen - lo) / (hi - lo)
                out.append((1 - s) * f / factor + s * f)
        freq = torch.tensor(out, dtype=torch.float64)
    return freq


def rotate(x, pos, freq):
    """x (T, heads, hs): channel i pairs with i + rot/2 inside the first rot channels."""
    rot = 2 * freq.numel()
    ang = pos[:, None].double() * freq[None, :]                      # (T, rot/2)
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    xr, rest = x[..., :rot], x[..., rot:]
    half = torch.cat([-xr[..., rot // 2:], xr[..., :rot // 2]], -1)  # rotate_half
    return torch.cat([xr * cos + half * sin, rest], -1)


def forward(cfg, w, tokens):
    """Llama and Mistral."""
    C, NH = cfg["hidden_size"], cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads", NH)
    hs = cfg.get("head_dim", C // NH)
    eps, T = cfg["rms_norm_eps"], len(tokens)
    window = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
    freq = inv_frequencies(cfg, hs)
    pos = torch.arange(T)
    seen = pos[None, :] <= pos[:, None]
    if window:
        seen &= pos[None, :] > pos[:, None] - window
    acts = {}
    lin = lambda x, name: x @ w[name + ".weight"].T + (w[name + ".bias"] if name + ".bias" in w else 0)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    acts["hook_embed"] = x
    for l in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{l}.", f"blocks.{l}."
        acts[b + "hook_resid_pre"] = x
        acts[b + "ln1.hook_normalized"], a = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        q = lin(a, p + "self_attn.q_proj").view(T, NH, hs)
        k = lin(a, p + "self_attn.k_proj").view(T, NKV, hs)
        v = lin(a, p + "self_attn.v_proj").view(T, NKV, hs)
        acts[b + "attn.hook_q"], acts[b + "attn.hook_k"], acts[b + "attn.hook_v"] = q, k, v
        q, k = rotate(q, pos, freq), rotate(k, pos, freq)
        acts[b + "attn.hook_rot_q"], acts[b + "attn.hook_rot_k"] = q, k
        group = NH // NKV
        kh = k.repeat_interleave(group, dim=1).transpose(0, 1)       # (NH, T, hs)
        vh = v.repeat_interleave(group, dim=1).transpose(0, 1)
        scores = q.transpose(0, 1) @ kh.transpose(1, 2) / math.sqrt(hs)
        scores = scores.masked_fill(~seen, float("-inf"))
        pattern = scores.softmax(-1)
        acts[b + "attn.hook_attn_scores"], acts[b + "attn.hook_pattern"] = scores, pattern
        z = (pattern @ vh).transpose(0, 1)                           # (T, NH, hs)
        acts[b + "attn.hook_z"] = z
        attn_out = lin(z.reshape(T, NH * hs), p + "self_attn.o_proj")
        acts[b + "hook_attn_out"] = attn_out
        x = x + attn_out
        acts[b + "hook_resid_mid"] = x
        acts[b + "ln2.hook_normalized"], m = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = lin(m, p + "mlp.gate_proj"), lin(m, p + "mlp.up_proj")
        post = torch.nn.functional.silu(gate) * up
        acts[b + "mlp.hook_pre"], acts[b + "mlp.hook_pre_linear"], acts[b + "mlp.hook_post"] = gate, up, post
        mlp_out = lin(post, p + "mlp.down_proj")
        acts[b + "hook_mlp_out"] = mlp_out
        x = x + mlp_out
        acts[b + "hook_resid_post"] = x
    acts["ln_final.hook_normalized"], f = rmsnorm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return f @ head.T, acts


def random_weights(cfg, gen):
    C, NH, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    NKV, F, V = cfg.get("num_key_value_heads", NH), cfg["intermediate_size"], cfg["vocab_size"]
    hs = cfg.get("head_dim", C // NH)
    rnd = lambda *shape, s=0.3: torch.randn(*shape, generator=gen, dtype=torch.float32) * s
    w = {"model.embed_tokens.weight": rnd(V, C, s=1.0), "model.norm.weight": 1 + rnd(C, s=0.1)}
    if not cfg.get("tie_word_embeddings"):
        w["lm_head.weight"] = rnd(V, C)
    for l in range(L):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = 1 + rnd(C, s=0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + rnd(C, s=0.1)
        for name, rows, cols in [("self_attn.q_proj", NH * hs, C), ("self_attn.k_proj", NKV * hs, C),
                                 ("self_attn.v_proj", NKV * hs, C), ("self_attn.o_proj", C, NH * hs),
                                 ("mlp.gate_proj", F, C), ("mlp.up_proj", F, C), ("mlp.down_proj", C, F)]:
            w[p + name + ".weight"] = rnd(rows, cols, s=1.0 / math.sqrt(cols))
            if cfg.get("attention_bias") and name.startswith("self_attn"):
                w[p + name + ".bias"] = rnd(rows, s=0.1)
    return w


def layernorm(x, w, b, eps):
    """(normalised input before weight and bias, as TransformerLens's LayerNormPre; the output)."""
    mu = x.mean(-1, keepdim=True)
    normed = (x - mu) / torch.sqrt((x - mu).pow(2).mean(-1, keepdim=True) + eps)
    return normed, normed * w + b


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def attend(acts, b, q, k, v, rot_freq, pos):
    """Causal multi-head attention on q, k, v (T, NH, hs), rotary on the first 2*len(freq) channels
    of each head when rot_freq is given; records the hooks and returns z (T, NH, hs)."""
    T, NH, hs = q.shape
    acts[b + "attn.hook_q"], acts[b + "attn.hook_k"], acts[b + "attn.hook_v"] = q, k, v
    if rot_freq is not None:
        q, k = rotate(q, pos, rot_freq), rotate(k, pos, rot_freq)
        acts[b + "attn.hook_rot_q"], acts[b + "attn.hook_rot_k"] = q, k
    seen = pos[None, :] <= pos[:, None]
    scores = q.transpose(0, 1) @ k.transpose(0, 1).transpose(1, 2) / math.sqrt(hs)
    scores = scores.masked_fill(~seen, float("-inf"))
    pattern = scores.softmax(-1)
    acts[b + "attn.hook_attn_scores"], acts[b + "attn.hook_pattern"] = scores, pattern
    z = (pattern @ v.transpose(0, 1)).transpose(0, 1)
    acts[b + "attn.hook_z"] = z
    return z


def rotary_freq(theta, rot):
    return 1.0 / theta ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)


def forward_gpt2(cfg, w, tokens):
    """GPT-2: learned positions, pre-LayerNorm blocks, Conv1D weights (in, out) so x @ W + b, the
    fused c_attn output is [all q | all k | all v], tanh GELU, head tied to wte."""
    C, NH, T = cfg["n_embd"], cfg["n_head"], len(tokens)
    hs, eps = C // NH, cfg["layer_norm_epsilon"]
    p0 = "transformer." if "transformer.wte.weight" in w else ""
    conv = lambda x, name: x @ w[name + ".weight"] + w[name + ".bias"]
    pos = torch.arange(T)
    acts = {}
    acts["hook_embed"] = w[p0 + "wte.weight"][torch.tensor(tokens)]
    acts["hook_pos_embed"] = w[p0 + "wpe.weight"][pos]
    x = acts["hook_embed"] + acts["hook_pos_embed"]
    for l in range(cfg["n_layer"]):
        p, b = f"{p0}h.{l}.", f"blocks.{l}."
        acts[b + "hook_resid_pre"] = x
        acts[b + "ln1.hook_normalized"], a = layernorm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = conv(a, p + "attn.c_attn")
        q, k, v = (qkv[:, i * C:(i + 1) * C].reshape(T, NH, hs) for i in range(3))
        z = attend(acts, b, q, k, v, None, pos)
        attn_out = conv(z.reshape(T, C), p + "attn.c_proj")
        acts[b + "hook_attn_out"] = attn_out
        x = x + attn_out
        acts[b + "hook_resid_mid"] = x
        acts[b + "ln2.hook_normalized"], m = layernorm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        pre = conv(m, p + "mlp.c_fc")
        post = gelu_tanh(pre)
        acts[b + "mlp.hook_pre"], acts[b + "mlp.hook_post"] = pre, post
        mlp_out = conv(post, p + "mlp.c_proj")
        acts[b + "hook_mlp_out"] = mlp_out
        x = x + mlp_out
        acts[b + "hook_resid_post"] = x
    acts["ln_final.hook_normalized"], f = layernorm(x, w[p0 + "ln_f.weight"], w[p0 + "ln_f.bias"], eps)
    return f @ w[p0 + "wte.weight"].T, acts


def forward_neox(cfg, w, tokens):
    """GPT-NeoX (Pythia): query_key_value's output is per head [q_h | k_h | v_h] (hs each), rotary on
    the first rotary_pct of each head, erf GELU, parallel residual x + attn(ln1 x) + mlp(ln2 x) or
    the sequential form, untied embed_out."""
    C, NH, T = cfg["hidden_size"], cfg["num_attention_heads"], len(tokens)
    hs, eps = C // NH, cfg["layer_norm_eps"]
    rot = int(hs * cfg["rotary_pct"])
    freq = rotary_freq(cfg["rotary_emb_base"], rot)
    bias = cfg.get("attention_bias", True)
    lin = lambda x, name, has_bias=True: x @ w[name + ".weight"].T + (w[name + ".bias"] if has_bias else 0)
    pos = torch.arange(T)
    acts = {}
    x = w["gpt_neox.embed_in.weight"][torch.tensor(tokens)]
    acts["hook_embed"] = x
    for l in range(cfg["num_hidden_layers"]):
        p, b = f"gpt_neox.layers.{l}.", f"blocks.{l}."
        acts[b + "hook_resid_pre"] = x
        acts[b + "ln1.hook_normalized"], a = layernorm(x, w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"], eps)
        qkv = lin(a, p + "attention.query_key_value", bias).reshape(T, NH, 3, hs)
        z = attend(acts, b, qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], freq, pos)
        attn_out = lin(z.reshape(T, C), p + "attention.dense", bias)
        acts[b + "hook_attn_out"] = attn_out

        def mlp(y):
            pre = lin(y, p + "mlp.dense_h_to_4h")
            post = gelu_erf(pre)
            acts[b + "mlp.hook_pre"], acts[b + "mlp.hook_post"] = pre, post
            out = lin(post, p + "mlp.dense_4h_to_h")
            acts[b + "hook_mlp_out"] = out
            return out
        ln2 = lambda y: layernorm(y, w[p + "post_attention_layernorm.weight"], w[p + "post_attention_layernorm.bias"], eps)
        if cfg["use_parallel_residual"]:
            acts[b + "ln2.hook_normalized"], m = ln2(x)
            x = x + attn_out + mlp(m)
        else:
            x = x + attn_out
            acts[b + "hook_resid_mid"] = x
            acts[b + "ln2.hook_normalized"], m = ln2(x)
            x = x + mlp(m)
        acts[b + "hook_resid_post"] = x
    acts["ln_final.hook_normalized"], f = layernorm(x, w["gpt_neox.final_layer_norm.weight"],
                                                    w["gpt_neox.final_layer_norm.bias"], eps)
    return f @ w["embed_out.weight"].T, acts


def forward_phi(cfg, w, tokens):
    """Phi: one LayerNorm feeding attention and MLP in parallel, x + attn(ln x) + mlp(ln x); partial
    rotary; q/k/v projections and dense with biases; tanh GELU; lm_head with a bias."""
    C, NH, T = cfg["hidden_size"], cfg["num_attention_heads"], len(tokens)
    hs, eps = C // NH, cfg["layer_norm_eps"]
    rot = int(hs * cfg["partial_rotary_factor"])
    freq = rotary_freq(cfg["rope_theta"], rot)
    lin = lambda x, name: x @ w[name + ".weight"].T + w[name + ".bias"]
    pos = torch.arange(T)
    acts = {}
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    acts["hook_embed"] = x
    for l in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{l}.", f"blocks.{l}."
        acts[b + "hook_resid_pre"] = x
        acts[b + "ln1.hook_normalized"], a = layernorm(x, w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"], eps)
        q, k, v = (lin(a, p + f"self_attn.{n}_proj").reshape(T, NH, hs) for n in "qkv")
        z = attend(acts, b, q, k, v, freq, pos)
        attn_out = lin(z.reshape(T, C), p + "self_attn.dense")
        acts[b + "hook_attn_out"] = attn_out
        pre = lin(a, p + "mlp.fc1")
        post = gelu_tanh(pre)
        acts[b + "mlp.hook_pre"], acts[b + "mlp.hook_post"] = pre, post
        mlp_out = lin(post, p + "mlp.fc2")
        acts[b + "hook_mlp_out"] = mlp_out
        x = x + attn_out + mlp_out
        acts[b + "hook_resid_post"] = x
    acts["ln_final.hook_normalized"], f = layernorm(x, w["model.final_layernorm.weight"], w["model.final_layernorm.bias"], eps)
    return f @ w["lm_head.weight"].T + w["lm_head.bias"], acts


def random_weights_gpt2(cfg, gen, prefix):
    C, L, V, P = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"], cfg["n_positions"]
    F = cfg.get("n_inner") or 4 * C
    rnd = lambda *shape, s=0.3: torch.randn(*shape, generator=gen, dtype=torch.float32) * s
    p0 = prefix
    w = {p0 + "wte.weight": rnd(V, C, s=1.0), p0 + "wpe.weight": rnd(P, C, s=0.5)}
    for l in range(L):
        p = f"{p0}h.{l}."
        for ln in ("ln_1", "ln_2"):
            w[p + ln + ".weight"], w[p + ln + ".bias"] = 1 + rnd(C, s=0.1), rnd(C, s=0.1)
        # Conv1D: weight (in, out)
        for name, fan_in, fan_out in [("attn.c_attn", C, 3 * C), ("attn.c_proj", C, C), ("mlp.c_fc", C, F), ("mlp.c_proj", F, C)]:
            w[p + name + ".weight"] = rnd(fan_in, fan_out, s=1.0 / math.sqrt(fan_in))
            w[p + name + ".bias"] = rnd(fan_out, s=0.1)
    w[p0 + "ln_f.weight"], w[p0 + "ln_f.bias"] = 1 + rnd(C, s=0.1), rnd(C, s=0.1)
    return w


def random_weights_neox(cfg, gen):
    C, L, V, F = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    bias = cfg.get("attention_bias", True)
    rnd = lambda *shape, s=0.3: torch.randn(*shape, generator=gen, dtype=torch.float32) * s
    w = {"gpt_neox.embed_in.weight": rnd(V, C, s=1.0)}
    for l in range(L):
        p = f"gpt_neox.layers.{l}."
        for ln in ("input_layernorm", "post_attention_layernorm"):
            w[p + ln + ".weight"], w[p + ln + ".bias"] = 1 + rnd(C, s=0.1), rnd(C, s=0.1)
        for name, rows, cols, has_bias in [("attention.query_key_value", 3 * C, C, bias), ("attention.dense", C, C, bias),
                                           ("mlp.dense_h_to_4h", F, C, True), ("mlp.dense_4h_to_h", C, F, True)]:
            w[p + name + ".weight"] = rnd(rows, cols, s=1.0 / math.sqrt(cols))
            if has_bias:
                w[p + name + ".bias"] = rnd(rows, s=0.1)
    w["gpt_neox.final_layer_norm.weight"], w["gpt_neox.final_layer_norm.bias"] = 1 + rnd(C, s=0.1), rnd(C, s=0.1)
    w["embed_out.weight"] = rnd(V, C)
    return w


def random_weights_phi(cfg, gen):
    C, L, V, F = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    rnd = lambda *shape, s=0.3: torch.randn(*shape, generator=gen, dtype=torch.float32) * s
    w = {"model.embed_tokens.weight": rnd(V, C, s=1.0)}
    for l in range(L):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"] = 1 + rnd(C, s=0.1), rnd(C, s=0.1)
        for name, rows, cols in [("self_attn.q_proj", C, C), ("self_attn.k_proj", C, C), ("self_attn.v_proj", C, C),
                                 ("self_attn.dense", C, C), ("mlp.fc1", F, C), ("mlp.fc2", C, F)]:
            w[p + name + ".weight"] = rnd(rows, cols, s=1.0 / math.sqrt(cols))
            w[p + name + ".bias"] = rnd(rows, s=0.1)
    w["model.final_layernorm.weight"], w["model.final_layernorm.bias"] = 1 + rnd(C, s=0.1), rnd(C, s=0.1)
    w["lm_head.weight"], w["lm_head.bias"] = rnd(V, C), rnd(V, s=0.3)
    return w


def write_safetensors(path, tensors, dtypes):
    """tensors: name -> float32 tensor; dtypes: name -> 'F32' | 'F16' | 'BF16' | 'I32'."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        dt = dtypes.get(name, "F32")
        if dt == "BF16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        elif dt == "F16":
            raw = t.to(torch.float16).view(torch.int16).numpy().tobytes()
        elif dt == "I32":
            raw = t.to(torch.int32).numpy().tobytes()
        else:
            raw = t.to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


ARCHS = {  # architectures[0] -> (random weights, forward)
    "LlamaForCausalLM": (lambda cfg, gen, kw: random_weights(cfg, gen), None),
    "MistralForCausalLM": (lambda cfg, gen, kw: random_weights(cfg, gen), None),
    "GPT2LMHeadModel": (lambda cfg, gen, kw: random_weights_gpt2(cfg, gen, kw.get("prefix", "transformer.")), forward_gpt2),
    "GPTNeoXForCausalLM": (lambda cfg, gen, kw: random_weights_neox(cfg, gen), forward_neox),
    "PhiForCausalLM": (lambda cfg, gen, kw: random_weights_phi(cfg, gen), forward_phi),
}


def fixture(name, cfg, seed, T=12, bf16=False, f16=False, shards=1, points=None, token_range=None, extra=None, **kw):
    """points: the activations written (None: all the model makes); token_range: tokens drawn below it
    (a vocabulary padded past the tokenizer's); extra: tensors a real checkpoint holds that the
    model does not use (GPT-2's attention-mask buffers), written beside the weights."""
    gen = torch.Generator().manual_seed(seed)
    make, fwd = ARCHS[cfg["architectures"][0]]
    w = make(cfg, gen, kw)
    if bf16:  # the reference runs on the stored (rounded) values
        w = {k: v.to(torch.bfloat16).to(torch.float32) for k, v in w.items()}
    if f16:
        w = {k: v.to(torch.float16).to(torch.float32) for k, v in w.items()}
    tokens = torch.randint(0, token_range or cfg["vocab_size"], (T,), generator=gen).tolist()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    dtypes = {k: "BF16" for k in w} if bf16 else {k: "F16" for k in w} if f16 else {}
    stored = dict(w, **(extra or {}))
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), stored, dtypes)
    else:
        names = list(stored)
        parts = [names[:len(names) // 2], names[len(names) // 2:]]
        weight_map = {}
        for i, part in enumerate(parts):
            file = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
            write_safetensors(os.path.join(d, file), {k: stored[k] for k in part}, dtypes)
            weight_map.update({k: file for k in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(v.numel() * 4 for v in stored.values())}, "weight_map": weight_map}, f, indent=2)
    w64 = {k: v.double() for k, v in w.items()}
    logits, acts = (fwd or forward)(cfg, w64, tokens)
    ref = {"tokens": torch.tensor(tokens), "logits": logits.float()}
    ref.update({"act." + p: acts[p].float() for p in (points or acts)})
    write_safetensors(os.path.join(d, "reference.safetensors"), ref, {"tokens": "I32"})
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {size} bytes, {len(ref) - 2} activations")


def base(**kw):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
           "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 64,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None, "hidden_act": "silu",
           "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
           "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    cfg.update(kw)
    return cfg


if __name__ == "__main__":
    torch.manual_seed(0)
    fixture("llama_gqa", base(head_dim=8), 1, points=POINTS)
    fixture("llama_mha", base(num_key_value_heads=4, head_dim=6, tie_word_embeddings=True, attention_bias=True), 2,
            points=POINTS)
    fixture("llama3_scaled", base(head_dim=16, num_attention_heads=2, num_key_value_heads=1, rope_theta=500000.0,
                                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
            3, T=40, shards=2, points=POINTS)
    fixture("mistral_window", base(architectures=["MistralForCausalLM"], model_type="mistral", head_dim=8,
                                   sliding_window=4), 4, points=POINTS)
    fixture("llama_bf16", base(head_dim=8, torch_dtype="bfloat16"), 5, bf16=True, points=POINTS)
    gpt2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 2,
            "n_inner": 64, "n_positions": 32, "n_ctx": 32, "vocab_size": 64, "layer_norm_epsilon": 1e-5,
            "activation_function": "gelu_new", "bos_token_id": 63, "eos_token_id": 63}
    causal = torch.tril(torch.ones(32, 32)).reshape(1, 1, 32, 32)  # the mask buffer old exports save
    fixture("gpt2", gpt2, 6, extra={f"transformer.h.{l}.attn.bias": causal for l in range(2)})
    fixture("gpt2_noprefix", dict(gpt2, n_inner=None, layer_norm_epsilon=1e-3, torch_dtype="float16"), 7, f16=True,
            prefix="")
    neox = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": 32,
            "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 80,
            "max_position_embeddings": 64, "layer_norm_eps": 1e-5, "hidden_act": "gelu", "rotary_pct": 0.25,
            "rotary_emb_base": 10000, "use_parallel_residual": True, "tie_word_embeddings": False,
            "bos_token_id": 0, "eos_token_id": 0}
    # hs 8, 2 rotated channels; tokens below 70 of the 80 rows: the tokenizer's vocabulary is smaller
    fixture("neox_parallel", neox, 8, token_range=70)
    fixture("neox_sequential", dict(neox, use_parallel_residual=False, rotary_pct=0.5, rotary_emb_base=500,
                                    attention_bias=False, layer_norm_eps=1e-3, vocab_size=64), 9)
    phi = {"architectures": ["PhiForCausalLM"], "model_type": "phi", "hidden_size": 32, "num_attention_heads": 4,
           "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 64, "max_position_embeddings": 64,
           "layer_norm_eps": 1e-5, "hidden_act": "gelu_new", "partial_rotary_factor": 0.5, "rope_theta": 10000.0,
           "qk_layernorm": False, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}
    fixture("phi", phi, 10)

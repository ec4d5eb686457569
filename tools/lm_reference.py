#!/usr/bin/env python3
"""Tiny random-weight Llama and Mistral checkpoints in Hugging Face's file layout, with reference
logits and captured activations, for tests/test_lm.c.

The model here is written from the published architecture (Llama: RMSNorm, rotate-half RoPE,
grouped-query attention, SiLU-gated MLP; Llama 3's rope_scaling frequency rule; Mistral's sliding
window: query t sees keys s with t - window < s <= t), not taken from any library. It computes in
float64 from the weights exactly as stored (BF16 weights widened), so what tests/test_lm.c measures
is bwt's own fp32 rounding.

Each fixture is a directory tests/fixtures/lm/NAME/ holding config.json, the weights
(model.safetensors, or two shards and model.safetensors.index.json) and reference.safetensors:
  tokens          I32 (T,)     the input sequence
  logits          F32 (T,V)    next-token logits at each position
  act.POINT       F32          activations under bwt's (TransformerLens's) names, batch dropped:
                               see docs/lm.md; attention scores hold -inf where masked

Fixtures: llama_gqa (4 query heads on 2 key/value heads, untied head), llama_mha (no grouping,
head_dim 6 != hidden/heads, tied embeddings, attention biases), llama3_scaled (rope_scaling llama3,
theta 5e5, sharded over two files), mistral_window (MistralForCausalLM, sliding_window 4 < T = 12),
llama_bf16 (BF16 weights, GQA).

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


def write_safetensors(path, tensors, dtypes):
    """tensors: name -> float32 tensor; dtypes: name -> 'F32' | 'BF16' | 'I32'."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        dt = dtypes.get(name, "F32")
        if dt == "BF16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
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


def fixture(name, cfg, seed, T=12, bf16=False, shards=1):
    gen = torch.Generator().manual_seed(seed)
    w = random_weights(cfg, gen)
    if bf16:  # the reference runs on the stored (rounded) values
        w = {k: v.to(torch.bfloat16).to(torch.float32) for k, v in w.items()}
    tokens = torch.randint(0, cfg["vocab_size"], (T,), generator=gen).tolist()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    dtypes = {k: "BF16" for k in w} if bf16 else {}
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), w, dtypes)
    else:
        names = list(w)
        parts = [names[:len(names) // 2], names[len(names) // 2:]]
        weight_map = {}
        for i, part in enumerate(parts):
            file = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
            write_safetensors(os.path.join(d, file), {k: w[k] for k in part}, dtypes)
            weight_map.update({k: file for k in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(v.numel() * 4 for v in w.values())}, "weight_map": weight_map}, f, indent=2)
    w64 = {k: v.double() for k, v in w.items()}
    logits, acts = forward(cfg, w64, tokens)
    ref = {"tokens": torch.tensor(tokens), "logits": logits.float()}
    ref.update({"act." + p: acts[p].float() for p in POINTS})
    write_safetensors(os.path.join(d, "reference.safetensors"), ref, {"tokens": "I32"})
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {size} bytes")


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
    fixture("llama_gqa", base(head_dim=8), 1)
    fixture("llama_mha", base(num_key_value_heads=4, head_dim=6, tie_word_embeddings=True, attention_bias=True), 2)
    fixture("llama3_scaled", base(head_dim=16, num_attention_heads=2, num_key_value_heads=1, rope_theta=500000.0,
                                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
            3, T=40, shards=2)
    fixture("mistral_window", base(architectures=["MistralForCausalLM"], model_type="mistral", head_dim=8,
                                   sliding_window=4), 4)
    fixture("llama_bf16", base(head_dim=8, torch_dtype="bfloat16"), 5, bf16=True)

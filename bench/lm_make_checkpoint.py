#!/usr/bin/env python3
"""Random checkpoints in Hugging Face's layout (config.json + model.safetensors, F32 or BF16) shaped
like real models, for bench/lm_run.py. Written tensor by tensor (memory: one tensor at a time).

  /usr/bin/python3 bench/lm_make_checkpoint.py SHAPE DIR [--dtype BF16|F32] [--seed N]

SHAPE: llama1b (Llama-3.2-1B: hidden 2048, 16 layers, 32 heads on 8 kv heads, head_dim 64, MLP 8192,
vocab 128256, tied, rope_theta 5e5 with llama3 rope_scaling), pythia160m (Pythia-160M's sizes in the
Llama architecture: hidden 768, 12 layers, 12 heads, MLP 3072, vocab 50304, untied), llama7b
(Llama-2-7B/Mistral-7B sizes: hidden 4096, 32 layers, 32 heads on 8 kv heads, MLP 14336, vocab 32000,
untied). Weights ~ N(0, 1/fan_in), norms 1 + N(0, 0.01), embeddings N(0, 1). --tile reuses slices of
one pool of random values (a 14.5 GB checkpoint in about a minute, for the memory measure).
"""
import argparse
import json
import math
import os
import struct

import numpy as np

SHAPES = {
    "llama1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                    head_dim=64, intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True,
                    rope_theta=500000.0, max_position_embeddings=131072,
                    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "pythia160m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12,
                       head_dim=64, intermediate_size=3072, vocab_size=50304, tie_word_embeddings=False,
                       rope_theta=10000.0, max_position_embeddings=2048, rope_scaling=None),
    "llama7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    head_dim=128, intermediate_size=14336, vocab_size=32000, tie_word_embeddings=False,
                    rope_theta=10000.0, max_position_embeddings=4096, rope_scaling=None),
}


def config(shape, dtype):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "rms_norm_eps": 1e-5,
           "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "bos_token_id": 1,
           "eos_token_id": 2, "torch_dtype": "bfloat16" if dtype == "BF16" else "float32"}
    cfg.update(SHAPES[shape])
    return cfg


def tensors(cfg):
    """(name, shape, std, mean) in file order."""
    C, L, NH = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    NKV, hs, F, V = cfg["num_key_value_heads"], cfg["head_dim"], cfg["intermediate_size"], cfg["vocab_size"]
    out = [("model.embed_tokens.weight", (V, C), 1.0, 0.0)]
    for l in range(L):
        p = f"model.layers.{l}."
        out.append((p + "input_layernorm.weight", (C,), 0.01, 1.0))
        for name, rows, cols in [("self_attn.q_proj", NH * hs, C), ("self_attn.k_proj", NKV * hs, C),
                                 ("self_attn.v_proj", NKV * hs, C), ("self_attn.o_proj", C, NH * hs)]:
            out.append((p + name + ".weight", (rows, cols), 1 / math.sqrt(cols), 0.0))
        out.append((p + "post_attention_layernorm.weight", (C,), 0.01, 1.0))
        for name, rows, cols in [("mlp.gate_proj", F, C), ("mlp.up_proj", F, C), ("mlp.down_proj", C, F)]:
            out.append((p + name + ".weight", (rows, cols), 1 / math.sqrt(cols), 0.0))
    out.append(("model.norm.weight", (C,), 0.01, 1.0))
    if not cfg["tie_word_embeddings"]:
        out.append(("lm_head.weight", (V, C), 1 / math.sqrt(C), 0.0))
    return out


def to_bf16(x):
    """float32 -> bf16 bits, round to nearest even."""
    u = x.view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("dir")
    ap.add_argument("--dtype", choices=["BF16", "F32"], default="BF16")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tile", action="store_true",
                    help="draw one pool of 2^25 values and reuse slices of it (fast; for memory measures)")
    a = ap.parse_args()
    cfg = config(a.shape, a.dtype)
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    size = 2 if a.dtype == "BF16" else 4
    header, offset, specs = {}, 0, tensors(cfg)
    for name, shape, _, _ in specs:
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": a.dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(a.seed)
    pool = rng.standard_normal(1 << 25, dtype=np.float32) if a.tile else None
    at = 0
    with open(os.path.join(a.dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name, shape, std, mean in specs:
            rows = shape[0]
            step = max(1, (1 << 24) // (int(np.prod(shape)) // rows))
            for r0 in range(0, rows, step):  # in slabs of about 16M values
                sh = (min(step, rows - r0),) + tuple(shape[1:])
                if a.tile:
                    n = int(np.prod(sh))
                    at = (at + 7919) % ((1 << 25) - n)
                    x = pool[at:at + n].reshape(sh).copy()
                else:
                    x = rng.standard_normal(sh, dtype=np.float32)
                x *= np.float32(std)
                x += np.float32(mean)
                f.write((to_bf16(x) if a.dtype == "BF16" else x).tobytes())
    n_params = sum(int(np.prod(s)) for _, s, _, _ in specs)
    print(f"{a.dir}: {a.shape}, {n_params / 1e6:.1f}M parameters, {a.dtype}, {offset / 1e9:.2f} GB")


if __name__ == "__main__":
    main()

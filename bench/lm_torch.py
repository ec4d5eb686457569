#!/usr/bin/env python3
"""PyTorch's side of bench/lm_run.py: the model of tools/lm_reference.py (same RMSNorm, llama3
frequency rule, rotate-half RoPE, grouped-query attention and SwiGLU), run in fp32 under
torch.no_grad on the weights of a Hugging Face directory (F32, or F16/BF16 widened to fp32 at load,
as bwt computes). The reference's own forward computes in float64 and keeps every activation for
the fixtures; this is the same computation kept lean (cosines and sines rounded to fp32, nothing
kept), as an fp32 PyTorch user would run it. Prints one JSON object.

  /usr/bin/python3 bench/lm_torch.py DIR [--tokens N] [--threads N] [--warmup N] [--repeats N] [--logits PATH]
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import lm_reference as ref  # noqa: E402


def proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) * 1024
    return float("nan")


def load(d):
    """name -> fp32 tensor from d/model.safetensors (numpy memmap; halves widened)."""
    path = os.path.join(d, "model.safetensors")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    w = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[a:b]
        if info["dtype"] == "BF16":
            x = torch.from_numpy(np.asarray(buf).view(np.uint16).astype(np.int32) << 16).view(torch.float32)
        elif info["dtype"] == "F16":
            x = torch.from_numpy(np.asarray(buf).view(np.float16).astype(np.float32))
        else:
            x = torch.from_numpy(np.array(buf).view(np.float32))
        w[name] = x.reshape(info["shape"])
    return w


class Model:
    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        C, NH = cfg["hidden_size"], cfg["num_attention_heads"]
        self.NH, self.NKV = NH, cfg.get("num_key_value_heads", NH)
        self.hs = cfg.get("head_dim", C // NH)
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.freq = ref.inv_frequencies(cfg, self.hs)
        self.head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]

    def norm(self, x, wt):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * wt

    def forward(self, tokens):
        w, T, NH, NKV, hs = self.w, len(tokens), self.NH, self.NKV, self.hs
        pos = torch.arange(T)
        ang = pos[:, None].double() * self.freq[None, :]
        cos = torch.cat([ang.cos(), ang.cos()], -1).float()[:, None, :]
        sin = torch.cat([ang.sin(), ang.sin()], -1).float()[:, None, :]
        rot = 2 * self.freq.numel()

        def rope(x):
            xr, rest = x[..., :rot], x[..., rot:]
            half = torch.cat([-xr[..., rot // 2:], xr[..., :rot // 2]], -1)
            return torch.cat([xr * cos + half * sin, rest], -1)

        mask = torch.full((T, T), float("-inf")).triu(1)
        x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
        group = NH // NKV
        for l in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            a = self.norm(x, w[p + "input_layernorm.weight"])
            q = (a @ w[p + "self_attn.q_proj.weight"].T).view(T, NH, hs)
            k = (a @ w[p + "self_attn.k_proj.weight"].T).view(T, NKV, hs)
            v = (a @ w[p + "self_attn.v_proj.weight"].T).view(T, NKV, hs)
            q, k = rope(q).transpose(0, 1), rope(k).transpose(0, 1)
            kh = k.repeat_interleave(group, dim=0)
            vh = v.transpose(0, 1).repeat_interleave(group, dim=0)
            scores = q @ kh.transpose(1, 2) / math.sqrt(hs) + mask
            z = (scores.softmax(-1) @ vh).transpose(0, 1).reshape(T, NH * hs)
            x = x + z @ w[p + "self_attn.o_proj.weight"].T
            m = self.norm(x, w[p + "post_attention_layernorm.weight"])
            g = torch.nn.functional.silu(m @ w[p + "mlp.gate_proj.weight"].T) * (m @ w[p + "mlp.up_proj.weight"].T)
            x = x + g @ w[p + "mlp.down_proj.weight"].T
        return self.norm(x, w["model.norm.weight"]) @ self.head.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--logits")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    base = proc_status("VmRSS")
    with open(os.path.join(a.dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") == "mistral" or cfg.get("sliding_window"):
        sys.exit("lm_torch.py: sliding windows are not benchmarked")
    t0 = time.perf_counter()
    model = Model(cfg, load(a.dir))
    open_s = time.perf_counter() - t0
    V = cfg["vocab_size"]
    tokens = [((1103515245 * i + 12345) % 2147483648) % V for i in range(a.tokens)]
    times, cpu = [], []
    with torch.no_grad():
        for r in range(a.warmup + a.repeats):
            s0, c0 = time.perf_counter(), time.process_time()
            logits = model.forward(tokens)
            if r >= a.warmup:
                times.append(time.perf_counter() - s0)
                cpu.append(time.process_time() - c0)
    if a.logits:
        logits.contiguous().numpy().astype("<f4").tofile(a.logits)
    med = float(np.median(times))
    print(json.dumps({"impl": "torch", "torch": torch.__version__, "tokens": a.tokens, "threads": a.threads,
                      "open_s": open_s, "median_s": med, "tokens_per_s": a.tokens / med, "times": times, "cpu_times": cpu,
                      "base_rss_bytes": base, "peak_rss_bytes": proc_status("VmHWM"),
                      "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()

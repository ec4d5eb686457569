#!/usr/bin/python3
"""The PyTorch side of the benchmark (bench/run.py drives it): loads the initial weights and the
batch that bench_step dumped, builds the identical model (tools/torch_reference.py, whose parity
with bwt tests/test_parity.c checks), and times a training step (forward, cross-entropy, backward,
global-norm clip 1.0, AdamW with weight decay on 2-D tensors) and a forward pass under no_grad.
Prints one JSON object.

    /usr/bin/python3 bench/bench_torch.py DUMP_DIR --threads N [--warmup N] [--repeats N] [--scan loop|parallel|chunked]

--scan (mamba): the reference's sequential scan, a Python loop over time (the default), the
Hillis–Steele prefix scan over whole tensors, or the chunked closed form (cumulative sums within
chunks of 8 steps); tools/torch_reference.py's scan_parallel and scan_chunked.
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import torch_reference as ref  # noqa: E402

NP_DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8"}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, e in header.items():
        lo, hi = e["data_offsets"]
        tensors[name] = np.frombuffer(data[lo:hi], dtype=NP_DTYPES[e["dtype"]]).reshape(e["shape"])
    return tensors, meta


def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def rss_peak():
    """VmHWM: unlike ru_maxrss, not inherited from the parent across fork and exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump_dir")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--scan", choices=sorted(ref.SCANS), default="loop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rss_base = rss_now()

    weights, meta = read_safetensors(os.path.join(args.dump_dir, "weights.safetensors"))
    batch, _ = read_safetensors(os.path.join(args.dump_dir, "batch.safetensors"))
    run = json.loads(meta["config"])
    cfg = dict(run["model"], scan=args.scan)
    model = ref.Model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(weights[ref.bwt_name(name)].copy()))
    tokens = torch.from_numpy(batch["tokens"].astype(np.int64))
    sup_pos = torch.from_numpy(batch["sup_pos"].astype(np.int64))
    targets = torch.from_numpy(batch["targets"].astype(np.int64)).reshape(-1)

    t = run["train"]
    decay, no_decay = ref.decay_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["eps"])

    def step():
        loss = F.cross_entropy(model(tokens, sup_pos), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip"])
        opt.step()
        return loss.item()

    def timed(fn):
        times = []
        for i in range(args.warmup + args.repeats):
            t0 = time.perf_counter()
            fn()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        return times

    first_loss = step()
    step_s = timed(step)
    with torch.no_grad():
        eval_s = timed(lambda: model(tokens, sup_pos))
    peak = rss_peak()
    print(json.dumps(dict(impl="torch", scan=args.scan, torch_version=torch.__version__, threads=args.threads,
                          params=sum(p.numel() for p in model.parameters()),
                          step_s=step_s, eval_s=eval_s,
                          step_s_median=float(np.median(step_s)), eval_s_median=float(np.median(eval_s)),
                          peak_rss_bytes=peak, base_rss_bytes=rss_base, loss=first_loss)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

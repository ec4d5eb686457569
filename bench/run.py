#!/usr/bin/python3
"""bwt against PyTorch, side by side on this machine: one command, one table.

For each config (small, mid, paper; the HMM size joins when that task exists) it runs, each in its
own process so that peak memory is per run:
  build/bench_step   bwt's training step and forward pass, at 1 and at 2 threads, plus the sgemm
                     ceiling on the step's own matrix shapes (the same calls, timed alone)
  bench_torch.py     the identical model, weights and batch in Debian's PyTorch, at 1 and 2
                     threads; the faster is the reference (PyTorch's best setting)
and prints the medians, the ratios and the memory, and writes everything to bench/results.json.

    /usr/bin/python3 bench/run.py [--configs small,mid,paper] [--arch transformer|mamba|...]
                                  [--torch-scan loop|parallel|chunked] [--rounds 3] [--repeats 10] [--warmup 3]
--arch is passed to bench_step (the default: transformer); for mamba, --torch-scan picks PyTorch's
scan (the reference's Python loop over time, the vectorised prefix scan or the chunked closed
form), and the table gains the fraction of bwt's step spent in the scan kernels alone.

Each process times --repeats steps after --warmup; --rounds repeats the four runs interleaved, and
the medians pool all repeats of all rounds.

FLOPs are the model's: every matrix product of the step (forward, and the two gradient products
of each) plus causal attention (s <= t only), the same count for both implementations. The
ceiling fraction compares bwt's step with those FLOPs at the sgemm ceiling; "bound" is the ratio
bwt would reach if its step took exactly that sgemm time and nothing else.
Environment variables (OPENBLAS_CORETYPE, OMP_*) are passed to both sides unchanged.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def merge(runs):
    """One measurement from several rounds: step and forward times pooled (median over all
    repeats of all rounds), peaks the largest, the sgemm ceiling the median."""
    m = dict(runs[0])
    for key in ("step_s", "eval_s"):
        m[key] = sorted(t for r in runs for t in r[key])
        m[key + "_median"] = statistics.median(m[key])
    m["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)
    if "sgemm_ceiling_gflops" in m:
        m["sgemm_ceiling_gflops"] = statistics.median(r["sgemm_ceiling_gflops"] for r in runs)
    m["rounds"] = runs
    return m


def measure(config, args):
    """Rounds interleave the four runs, so that a slow spell of a shared machine falls on both."""
    bench = os.path.join(args.build, "bench_step")
    common = ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    runs = {(impl, t): [] for impl in ("bwt", "torch") for t in (1, 2)}
    with tempfile.TemporaryDirectory(prefix="bwt-bench-") as dump:
        for rnd in range(args.rounds):
            for threads in (1, 2):
                extra = ["--dump", dump] if threads == 2 and rnd == 0 else []
                runs["bwt", threads].append(
                    run_json([bench, "--config", config, "--arch", args.arch, *common, "--threads", str(threads),
                              *extra]))
            for threads in (1, 2):
                runs["torch", threads].append(run_json(
                    [sys.executable, os.path.join(HERE, "bench_torch.py"), dump, *common, "--threads", str(threads),
                     "--scan", args.torch_scan]))
            print(f"  {config} round {rnd + 1}/{args.rounds}: ms/step " + ", ".join(
                f"{impl} {t}T {runs[impl, t][-1]['step_s_median'] * 1e3:.1f}" for impl, t in runs), file=sys.stderr)
    return {impl: {t: merge(runs[impl, t]) for t in (1, 2)} for impl in ("bwt", "torch")}


def summarise(config, r):
    b1, b2 = r["bwt"][1], r["bwt"][2]
    t_best = min(r["torch"].values(), key=lambda d: d["step_s_median"])
    t_eval = min(d["eval_s_median"] for d in r["torch"].values())
    step, flops = b2["step_s_median"], b2["step_flops"]
    gemm_s = b2["gemm_flops"] / (b2["sgemm_ceiling_gflops"] * 1e9)  # bwt's own products at the ceiling
    return {
        "config": config,
        "params": b2["params"],
        "tokens_per_step": b2["B"] * b2["T"],
        "bwt_step_s_1t": b1["step_s_median"],
        "bwt_step_s_2t": step,
        "torch_step_s_1t": r["torch"][1]["step_s_median"],
        "torch_step_s_2t": r["torch"][2]["step_s_median"],
        "torch_best_threads": t_best["threads"],
        "ratio": t_best["step_s_median"] / step,
        "bound": t_best["step_s_median"] / gemm_s,
        "tokens_per_s": b2["B"] * b2["T"] / step,
        "torch_tokens_per_s": b2["B"] * b2["T"] / t_best["step_s_median"],
        "gflops": flops / step / 1e9,
        "torch_gflops": flops / t_best["step_s_median"] / 1e9,
        "sgemm_ceiling_gflops": b2["sgemm_ceiling_gflops"],
        "ceiling_fraction": gemm_s / step,
        "scaling_2t_over_1t": b1["step_s_median"] / step,
        "bwt_eval_s": b2["eval_s_median"],
        "torch_eval_s": t_eval,
        "eval_ratio": t_eval / b2["eval_s_median"],
        "bwt_peak_mb": b2["peak_rss_bytes"] / 1e6,
        "torch_peak_mb": max(d["peak_rss_bytes"] for d in r["torch"].values()) / 1e6,
        "bwt_used_mb": (b2["peak_rss_bytes"] - b2["base_rss_bytes"]) / 1e6,
        "torch_used_mb": max(d["peak_rss_bytes"] - d["base_rss_bytes"] for d in r["torch"].values()) / 1e6,
        "needed_mb": b2["needed_bytes"] / 1e6,
        "memory_over_needed": (b2["peak_rss_bytes"] - b2["base_rss_bytes"]) / b2["needed_bytes"],
        "blas_core": b2["blas_core"],
        "arch": b2["arch"],
        "scan_fraction": b2.get("scan_s", 0) / step,
    }


def print_tables(rows):
    print("\ntraining step (median s/step; ratio = PyTorch at its best thread count / bwt at 2 threads)")
    hdr = ["config", "params", "bwt 1T", "bwt 2T", "torch 1T", "torch 2T", "ratio", "bound",
           "bwt tok/s", "GFLOP/s", "ceiling", "% ceil", "2T/1T"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for s in rows:
        print(f"| {s['config']} | {s['params']} | {s['bwt_step_s_1t']:.4f} | {s['bwt_step_s_2t']:.4f} | "
              f"{s['torch_step_s_1t']:.4f} | {s['torch_step_s_2t']:.4f} | {s['ratio']:.2f}x | {s['bound']:.2f}x | "
              f"{s['tokens_per_s']:.0f} | {s['gflops']:.0f} | {s['sgemm_ceiling_gflops']:.0f} | "
              f"{100 * s['ceiling_fraction']:.0f}% | {s['scaling_2t_over_1t']:.2f}x |")
    if any(s["scan_fraction"] for s in rows):
        print("\nbwt's step at 2 threads spent in the selective scan kernels alone (forward + backward)")
        for s in rows:
            print(f"| {s['config']} | {s['arch']} | scan {100 * s['scan_fraction']:.0f}% of the step |")
    print("\nevaluation (forward only, 2 threads for bwt) and memory (peak RSS; 'used' = above the "
          "process's RSS before the model existed)")
    hdr = ["config", "bwt fwd s", "torch fwd s", "ratio", "bwt peak MB", "torch peak MB", "bwt used MB",
           "torch used MB", "needed MB", "used/needed"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for s in rows:
        print(f"| {s['config']} | {s['bwt_eval_s']:.4f} | {s['torch_eval_s']:.4f} | {s['eval_ratio']:.2f}x | "
              f"{s['bwt_peak_mb']:.0f} | {s['torch_peak_mb']:.0f} | {s['bwt_used_mb']:.0f} | "
              f"{s['torch_used_mb']:.0f} | {s['needed_mb']:.0f} | {s['memory_over_needed']:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="small,mid,paper")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--arch", default="transformer")
    ap.add_argument("--torch-scan", default="loop", choices=("loop", "parallel", "chunked"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    args = ap.parse_args()
    if not os.access(os.path.join(args.build, "bench_step"), os.X_OK):
        sys.exit(f"bench/run.py: {args.build}/bench_step not found; build first (scripts/setup.sh)")
    if subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode != 0:
        sys.exit("bench/run.py: PyTorch not importable; run with Debian's /usr/bin/python3 "
                 "(apt-get install python3-torch)")
    configs = [c for c in args.configs.split(",") if c]
    raw, rows = {}, []
    for config in configs:
        raw[config] = measure(config, args)
        rows.append(summarise(config, raw[config]))
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": raw[configs[0]]["torch"][1]["torch_version"] if configs else None,
        "blas_core": rows[0]["blas_core"] if rows else None,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "rounds": args.rounds,
    }
    print(f"\n{env['date']}  bwt {env['commit']}  {env['cpu']} ({env['cores']} cores)  torch {env['torch']}  "
          f"OpenBLAS kernels {env['blas_core']} (OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']})")
    print_tables(rows)
    with open(args.out + ".tmp", "w") as f:
        json.dump({"environment": env, "summary": rows, "raw": raw}, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

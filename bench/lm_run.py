#!/usr/bin/env python3
"""The language-model forward benchmark: bwt (build/lm_forward) against PyTorch fp32
(bench/lm_torch.py, the model of tools/lm_reference.py) on the same weights and tokens.

For each model directory and prompt length it runs, interleaved for --rounds rounds, bwt at 1 and 2
threads and PyTorch at 1 and 2 threads, each in its own process (median of --repeats after
--warmup), checks that bwt's and PyTorch's logits agree (max |diff| / max |logit| < 1e-4, every
position, in the same run), and prints one Markdown table: tokens/s, the ratio to PyTorch at its
faster thread count from bwt at its faster one (and, less sensitive to a loaded machine, the ratio of the CPU seconds
PyTorch and bwt spend at 1 thread), the sgemm ceiling on the model's own projection shapes (the same cblas_sgemm calls timed alone, at
bwt's faster thread count) and bwt's % of it (the products' time at the ceiling over bwt's forward), and
the peak RSS of each side. Everything goes to --json (bench/lm_results.json).

  /usr/bin/python3 bench/lm_run.py DIR[,DIR...] [--tokens 128,512] [--rounds 1] [--repeats 3]

Make the directories with bench/lm_make_checkpoint.py.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def median(xs):
    return float(np.median(xs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models")
    ap.add_argument("--tokens", default="128,512")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "lm_forward"))
    ap.add_argument("--json", default=os.path.join(HERE, "lm_results.json"))
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    tmp = tempfile.mkdtemp(prefix="lm_run_")
    results = []
    print("| model | tokens | bwt 1t tok/s | bwt 2t tok/s | torch 1t tok/s | torch 2t tok/s | ratio (best/best) | "
          "1t ratio (CPU s) | sgemm ceiling GFLOP/s (bwt's best threads) | % of ceiling | bwt peak RSS | torch peak RSS | "
          "logits max diff / max |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for d in a.models.split(","):
        name = os.path.basename(os.path.normpath(d))
        for T in [int(t) for t in a.tokens.split(",")]:
            runs = {}
            for rnd in range(a.rounds):
                for th in threads:
                    common = ["--tokens", str(T), "--threads", str(th), "--warmup", str(a.warmup),
                              "--repeats", str(a.repeats)]
                    lb, lt = os.path.join(tmp, "bwt.bin"), os.path.join(tmp, "torch.bin")
                    check = rnd == 0 and th == threads[-1]
                    extra_b = ["--logits", lb] if check else []
                    extra_t = ["--logits", lt] if check else []
                    ceil = [] if rnd == 0 else ["--no-ceiling"]
                    runs.setdefault(("bwt", th), []).append(
                        run_json([a.bench, "--model", d, *common, *extra_b, *ceil]))
                    runs.setdefault(("torch", th), []).append(
                        run_json([sys.executable, os.path.join(HERE, "lm_torch.py"), d, *common, *extra_t]))
                    if check:
                        xb, xt = np.fromfile(lb, "<f4"), np.fromfile(lt, "<f4")
                        diff = float(np.abs(xb.astype(np.float64) - xt).max() / np.abs(xt).max())
                        os.remove(lb)
                        os.remove(lt)
                        if not diff < 1e-4:
                            sys.exit(f"{name} T={T}: logits disagree, max diff / max logit {diff:.3g}")
            tps = {k: median([t for r in v for t in r["times"]]) for k, v in runs.items()}
            tps = {k: T / s for k, s in tps.items()}
            cpu = {k: median([t for r in v for t in r["cpu_times"]]) for k, v in runs.items()}
            best_torch = max(tps["torch", th] for th in threads)
            bwt_best_th = max(threads, key=lambda th: tps["bwt", th])
            ceil_run = next(r for r in runs["bwt", bwt_best_th] if r["sgemm_s"] is not None)
            ceiling = ceil_run["gemm_flops"] / ceil_run["sgemm_s"] / 1e9
            bwt_s = T / tps["bwt", bwt_best_th]
            pct = 100 * ceil_run["sgemm_s"] / bwt_s
            peak_b = max(r["peak_rss_bytes"] for k, v in runs.items() if k[0] == "bwt" for r in v)
            peak_t = max(r["peak_rss_bytes"] for k, v in runs.items() if k[0] == "torch" for r in v)
            row = {"model": name, "dir": d, "tokens": T, "tokens_per_s": {f"{k[0]}_{k[1]}": v for k, v in tps.items()},
                   "ratio": tps["bwt", bwt_best_th] / best_torch, "bwt_best_threads": bwt_best_th,
                   "cpu_s": {f"{k[0]}_{k[1]}": v for k, v in cpu.items()},
                   "ratio_cpu_1t": cpu.get(("torch", 1), float("nan")) / cpu.get(("bwt", 1), float("nan")), "sgemm_ceiling_gflops": ceiling,
                   "pct_of_ceiling": pct, "bwt_peak_rss_bytes": peak_b, "torch_peak_rss_bytes": peak_t,
                   "logits_rel_diff": diff, "runs": {f"{k[0]}_{k[1]}": v for k, v in runs.items()}}
            results.append(row)
            cell = lambda k: f"{tps[k]:.1f}" if k in tps else "-"
            print(f"| {name} | {T} | {cell(('bwt', 1))} | {cell(('bwt', 2))} | {cell(('torch', 1))} | "
                  f"{cell(('torch', 2))} | {row['ratio']:.2f}x | {row['ratio_cpu_1t']:.2f}x | {ceiling:.1f} | {pct:.0f}% | "
                  f"{peak_b / 1e9:.2f} GB | {peak_t / 1e9:.2f} GB | {diff:.2g} |", flush=True)
    with open(a.json, "w") as f:
        json.dump({"blas_core": results[0]["runs"][f"bwt_{threads[-1]}"][0]["blas_core"] if results else None,
                   "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "results": results}, f, indent=1)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()

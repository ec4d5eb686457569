#!/usr/bin/python3
"""Time to accuracy on the bijection (V=20, L=19, hard targets): bwt against PyTorch, same machine,
same run.

Runs, one after another (never side by side, so neither slows the other), for each seed:
  bwt, authors' recipe    build/bwt train with the papers' own script's recipe and model (d 64, 2
                          layers, 4 heads, batch 64, AdamW 3e-4, weight decay 0.1 on every tensor,
                          warmup 500, cosine to 0 over 20k steps, clip 1; tied head, no attention
                          biases, PyTorch's initialisation)
  PyTorch, same recipe    tools/torch_train.py, the same model and recipe in Debian's PyTorch, at its
                          best thread count (--torch-threads; 1 here, see bench/README.md)
  bwt, best recipe        bwt's CPU recipe (the same model without weight decay, lr 1e-3, 40k steps:
                          experiments/README.md has the search behind it)
and records, every --eval-every steps, the held-out entropy MAE (value slice renormalised, the
authors' definition, and over the full distribution) against the training wall time (evaluations
excluded). It prints the wall time to reach 0.1, 0.05, 0.03 and 0.01 bits, the ratios, and the MAE
of both at equal steps; writes bench/time_to_accuracy.json and .csv, and the figure
bench/time_to_accuracy.png/.svg (MAE against wall time).

    /usr/bin/python3 bench/time_to_accuracy.py [--seeds 1] [--threads 2] [--torch-threads 1]

About 25 minutes per seed on 2 cores.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
THRESHOLDS = (0.1, 0.05, 0.03, 0.01)
MODEL = ["--d-model", "64", "--layers", "2", "--heads", "4", "--init", "torch", "--tied-head", "--no-attn-bias"]
AUTHORS = ["--batch", "64", "--lr", "3e-4", "--weight-decay", "0.1", "--decay", "all", "--warmup", "500",
           "--steps", "20000", "--min-lr-frac", "0", "--clip", "1"]
BEST = ["--batch", "64", "--lr", "1e-3", "--weight-decay", "0", "--warmup", "1000", "--steps", "40000",
        "--min-lr-frac", "0", "--clip", "1"]


def bwt_curve(recipe, seed, threads, eval_every, eval_seqs, workdir):
    out = os.path.join(workdir, "bwt-%d-%s" % (seed, "authors" if recipe is AUTHORS else "best"))
    cmd = [os.path.join(ROOT, "build", "bwt"), "train", *MODEL, *recipe, "--seed", str(seed), "--threads", str(threads),
           "--eval-every", str(eval_every), "--eval-seqs", str(eval_seqs), "--ckpt-every", "0", "--log-every", "1000",
           "--out", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    curve = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            if "eval" in o:
                curve.append({"step": o["step"], "train_s": o["train_s"], "entropy_mae": o["eval"]["entropy_mae"],
                              "entropy_mae_renorm": o["eval"]["entropy_mae_renorm"]})
    return curve


def torch_curve(seed, threads, eval_every, eval_seqs):
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "tools", "torch_train.py"), "--seed", str(seed), "--threads", str(threads),
           "--eval-every", str(eval_every), "--eval-seqs", str(eval_seqs), "--steps", "20000", "--lr", "3e-4",
           "--weight-decay", "0.1", "--warmup", "500", "--batch", "64"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def time_to(curve, key, threshold):
    """The training time of the first evaluation at or below threshold (None if never)."""
    for p in curve:
        if p[key] <= threshold:
            return p["train_s"]
    return None


def at_step(curve, step, key):
    for p in curve:
        if p["step"] == step:
            return p[key]
    return None


def fmt(x, spec="%.0f s"):
    return "—" if x is None else spec % x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="bwt's threads")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-seqs", type=int, default=2000)
    ap.add_argument("--out", default=os.path.join(HERE, "time_to_accuracy"))
    a = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for seed in range(1, a.seeds + 1):
            for name, fn in (("bwt, authors' recipe", lambda: bwt_curve(AUTHORS, seed, a.threads, a.eval_every, a.eval_seqs, work)),
                             ("PyTorch, authors' recipe", lambda: torch_curve(seed, a.torch_threads, a.eval_every, a.eval_seqs)),
                             ("bwt, best recipe", lambda: bwt_curve(BEST, seed, a.threads, 2 * a.eval_every, a.eval_seqs, work))):
                print("running %s, seed %d" % (name, seed), file=sys.stderr, flush=True)
                runs.append({"name": name, "seed": seed, "curve": fn()})
    key = "entropy_mae_renorm"
    print("bijection V=20 L=19, hard targets; held-out %d sequences; wall time of training to reach an entropy "
          "MAE (value slice renormalised, the authors' definition), seconds:\n" % a.eval_seqs)
    print("| run | seed | " + " | ".join("%g bits" % t for t in THRESHOLDS) + " | final MAE | final full-distribution MAE |")
    print("|---|---|" + "---|" * len(THRESHOLDS) + "---|---|")
    for r in runs:
        c = r["curve"]
        print("| %s | %d | %s | %.4f | %.4f |" % (r["name"], r["seed"], " | ".join(fmt(time_to(c, key, t)) for t in THRESHOLDS),
                                               c[-1][key], c[-1]["entropy_mae"]))
    print("\nratio PyTorch / bwt (authors' recipe, the same steps):")
    for seed in range(1, a.seeds + 1):
        b, t = (next(r["curve"] for r in runs if r["name"] == n and r["seed"] == seed)
                for n in ("bwt, authors' recipe", "PyTorch, authors' recipe"))
        ratios = []
        for th in THRESHOLDS:
            tb, tt = time_to(b, key, th), time_to(t, key, th)
            ratios.append(fmt(tt / tb if tb and tt else None, "%.2fx"))
        per_step = ", ".join("step %d: bwt %s, PyTorch %s" % (s, fmt(at_step(b, s, key), "%.4f"), fmt(at_step(t, s, key), "%.4f"))
                             for s in (2000, 4000, 6000, 20000))
        print("  seed %d: %s  (MAE %s)" % (seed, ", ".join("%g bits %s" % (th, r) for th, r in zip(THRESHOLDS, ratios)), per_step))
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "metric": key, "thresholds": THRESHOLDS,
              "threads": a.threads, "torch_threads": a.torch_threads, "eval_seqs": a.eval_seqs, "runs": runs}
    with open(a.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(a.out + ".csv", "w") as f:
        f.write("series,train_s,entropy_mae_renorm\n")
        for r in runs:
            for p in r["curve"]:
                f.write("%s (seed %d),%.3f,%.6g\n" % (r["name"].replace(",", ""), r["seed"], p["train_s"], p[key]))
    subprocess.run([os.path.join(ROOT, "build", "plot_curves"), a.out + ".csv", a.out,
                    "Bijection V=20, hard targets: time to accuracy", "training wall time (s)",
                    "entropy MAE (bits, value slice)", "--log-x", "--log-y"], check=True, stdout=subprocess.DEVNULL)
    print("\nwrote %s.json, .csv, .png and .svg" % a.out)


if __name__ == "__main__":
    main()

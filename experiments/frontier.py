#!/usr/bin/python3
"""The recipe search's frontier: entropy MAE (or accuracy) against training wall time, per task.

Reads every experiments/recipes/NAME/evals.jsonl (the evaluation lines of a run's metrics.jsonl,
kept by experiments/run.sh) and writes
  experiments/frontier.csv           task, run, step, train_s, entropy_mae, entropy_mae_renorm, kl_bits, accuracy
  experiments/frontier_TASK.png/.svg one line per run (through build/plot_curves)
and prints, per run, its best evaluation and the training time at which it first met the task's
target (experiments/README.md lists the targets). Run names start with the task's prefix. A
curriculum's stages are runs named BASE_p<pairs> (experiments/curriculum_recall.sh): the frontier
shows the last stage only, its times counted from the start of the first. A run started from
another run's weights on the same task (train.init_from, a second run of one recipe) continues that
run's curve: its steps and times count on from the end of the first.

    /usr/bin/python3 experiments/frontier.py
"""
import json
import os
import re
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# prefix -> (task label, metric, target, lower is better)
TASKS = {
    "bij": ("bijection V=20, hard targets", "entropy_mae", 0.007, True),
    "verdict_bij": ("bijection V=20 (verdict models)", "entropy_mae", 0.007, True),
    "hmm": ("HMM S=5 O=5 K=20, soft targets", "entropy_mae", 0.049, True),
    "recall": ("associative recall, 64 pairs", "accuracy", 0.99, False),
    "modular": ("modular recurrence p=17, integer tokens", "entropy_mae", 0.014, True),
}


def task_of(name):
    for prefix in sorted(TASKS, key=len, reverse=True):
        if name.startswith(prefix + "_"):
            return prefix
    return None


def resumed_at(path):
    """The steps at which the run's train.log says it was resumed."""
    log = os.path.join(os.path.dirname(path), "train.log")
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    return [int(m) for m in re.findall(r"resuming \S+ at step (\d+)", text)]


def read_curve(path):
    """(step, train_s, entropy_mae, entropy_mae_renorm, kl_bits, accuracy) per evaluation. train_s counts
    from the start of each invocation, so after a resume from step c the earlier invocation's time at c
    is added: interpolated between its last two evaluations (its lines past c were dropped)."""
    curve, offset, resumes = [], 0.0, resumed_at(path)
    for line in open(path):
        o = json.loads(line)
        e = o["eval"]
        t = o.get("train_s", o.get("elapsed_s", 0.0))
        if curve and t + offset < curve[-1][1] and resumes:
            c = resumes.pop(0)
            (s0, t0), (s1, t1) = (curve[-2][:2] if len(curve) > 1 else (0, 0.0)), curve[-1][:2]
            offset = t1 + (c - s1) * (t1 - t0) / (s1 - s0)
        curve.append((o["step"], t + offset, e["entropy_mae"], e["entropy_mae_renorm"], e["kl_bits"], e.get("accuracy")))
    return curve


def curriculum(names, name):
    """(is an earlier stage, seconds of the earlier stages) of run `name`."""
    m = re.match(r"(.*)_p(\d+)$", name)
    if not m:
        return False, 0.0
    stages = sorted((int(re.match(r".*_p(\d+)$", n).group(1)), n) for n in names if re.match(re.escape(m.group(1)) + r"_p\d+$", n))
    earlier = [n for p, n in stages if p < int(m.group(2))]
    if int(m.group(2)) < stages[-1][0]:
        return True, 0.0
    return False, sum(read_curve(os.path.join(HERE, "recipes", n, "evals.jsonl"))[-1][1] for n in earlier)


def continued_from(recipes, name):
    """The run this one was started from (train.init_from) if that run is in recipes/ with the same task."""
    cfg_path = os.path.join(recipes, name, "config.json")
    if not os.path.exists(cfg_path):
        return None
    cfg = json.load(open(cfg_path))
    src = cfg["train"].get("init_from", "")
    parent = os.path.basename(os.path.dirname(src) if src.endswith(".safetensors") else src.rstrip("/"))
    parent_cfg = os.path.join(recipes, parent, "config.json")
    if not src or not os.path.exists(parent_cfg) or json.load(open(parent_cfg))["task"] != cfg["task"]:
        return None
    return parent


def full_curve(recipes, name):
    """The run's curve, after the curves of the runs it continues (steps and times added on)."""
    curve = read_curve(os.path.join(recipes, name, "evals.jsonl"))
    parent = continued_from(recipes, name)
    if not parent:
        return curve
    before = full_curve(recipes, parent)
    s0, t0 = before[-1][:2]
    return before + [(p[0] + s0, p[1] + t0) + p[2:] for p in curve]


def main():
    rows, by_task = [], {}
    recipes = os.path.join(HERE, "recipes")
    names = sorted(n for n in os.listdir(recipes) if os.path.exists(os.path.join(recipes, n, "evals.jsonl")))
    for name in names:
        prefix = task_of(name)
        stage, offset = curriculum(names, name)
        curve = [(p[0], p[1] + offset) + p[2:] for p in full_curve(recipes, name)]
        if not prefix or stage or not curve:
            continue
        by_task.setdefault(prefix, []).append((name, curve))
        rows += [(prefix, name) + p for p in curve]
    with open(os.path.join(HERE, "frontier.csv"), "w") as f:
        f.write("task,run,step,train_s,entropy_mae,entropy_mae_renorm,kl_bits,accuracy\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")
    for prefix, runs in sorted(by_task.items()):
        label, metric, target, lower = TASKS[prefix]
        col = {"entropy_mae": 2, "accuracy": 5}[metric]
        print("%s (target %s %g):" % (label, metric, target))
        csv = os.path.join(HERE, "frontier_%s.csv" % prefix)
        with open(csv, "w") as f:
            f.write("series,train_s,%s\n" % metric)
            for name, curve in runs:
                best = min(curve, key=lambda p: p[col] if lower else -(p[col] or 0))
                met = next((p for p in curve if p[col] is not None and (p[col] <= target if lower else p[col] >= target)), None)
                print("  %-44s best %s %.4f at step %d (%.0f s)%s" % (name, metric, best[col], best[0], best[1],
                      "; target met at step %d, %.0f s" % (met[0], met[1]) if met else ""))
                for p in curve:
                    if p[col] is not None:
                        f.write("%s,%.3f,%.6g\n" % (name, max(p[1], 1e-3), p[col] if lower else 1 - p[col] + 1e-6))
        ylabel = "entropy MAE (bits)" if lower else "error rate (1 - accuracy; 0 drawn at 1e-6)"
        subprocess.run([os.path.join(ROOT, "build", "plot_curves"), csv, os.path.join(HERE, "frontier_%s" % prefix),
                        label + ": recipe search", "training wall time (s, 1 thread beside other work)", ylabel,
                        "--log-x", "--log-y"], check=True, stdout=subprocess.DEVNULL)
        os.remove(csv)


if __name__ == "__main__":
    main()

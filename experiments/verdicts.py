#!/usr/bin/python3
"""The verdict table: the papers' mechanism claims against the JSON that experiments/verdicts.sh
kept under experiments/verdicts/NAME/ (geometry.json, series.json, ablation.json, timescales.json,
detect.json, eval.json), one column per model. Prints Markdown.

    /usr/bin/python3 experiments/verdicts.py NAME ...      (run directories or names)
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name, file):
    path = os.path.join(HERE, "verdicts", name, file)
    return json.load(open(path)) if os.path.exists(path) else None


def rng(xs):
    return "%.2f–%.2f" % (min(xs), max(xs))


def column(name):
    g, a, t, d, e, s = (load(name, f) for f in ("geometry.json", "ablation.json", "timescales.json", "detect.json",
                                                 "eval.json", "series.json"))
    cells = {}
    if e:
        cells["model"] = "%.4f bits MAE, %.4f KL" % (e["overall"]["entropy_mae"], e["overall"]["kl_bits"])
    if g:
        kf = g["key_frames"]
        if "mean_abs_cos" in kf:
            per_layer = ["L%d %s" % (l, rng(row)) for l, row in enumerate(kf["mean_abs_cos"])]
            init = [x for row in kf.get("mean_abs_cos_init", []) for x in row]
            cells["key frames"] = "mean |cos| %s (init %s, Gaussian %.2f)" % (
                ", ".join(per_layer), rng(init) if init else "?", kf["gaussian_expectation"])
        at = g["attention"]
        ent = at["entropy_bits"]
        cells["focusing"] = "head-mean entropy %.2f → %.2f bits (uniform %.2f): %.0f%% reduction" % (
            sum(ent[0]) / len(ent[0]), sum(ent[-1]) / len(ent[-1]), at["uniform_entropy_bits"], 100 * at["first_to_last_reduction"])
        vm = g["value_manifold"]
        f = vm["final"]
        best = max(vm["per_layer"], key=lambda m: m["pc1"])
        cells["value manifold"] = "final norm PC1 %.1f%% (Spearman %.2f); best block PC1 %.1f%% (Spearman %.2f)" % (
            100 * f["pc1"], f["spearman_pc1_entropy"], 100 * best["pc1"], best["spearman_pc1_entropy"])
        places = [("block %d" % l, m) for l, m in enumerate(vm["per_layer"])] + [("final", f)]
        if "curvature" in f:  # docs/curvature.md
            where, flat = min(places, key=lambda p: p[1]["curvature"])
            cells["curvature"] = "min %.2f half-turns at %s (null %.2f); final %.2f" % (
                flat["curvature"], where, flat["curvature_null_median"], f["curvature"])
        pr = g["entropy_probe_r2"]
        cells["entropy probe"] = "R² embeddings %.3f, final %.3f" % (pr["embeddings"], pr["final_norm"])
    if s:
        at = s["step_at_90pct"]
        cells["frame vs precision"] = "90%% reached at step: attention %s, key subspace %s; entropy MAE %s, KL %s, manifold %s" % tuple(
            at.get(k) for k in ("attention_similarity", "key_subspace_overlap", "entropy_mae_bits", "kl_bits", "manifold_alignment"))
    if a:
        worst = a["most_critical_head"]
        blocks = ", ".join("block %d: attention %+.3f, MLP %+.3f" % (b["layer"], b["attention"]["delta_entropy_mae_bits"],
                                                                     b["mlp"]["delta_entropy_mae_bits"]) for b in a["blocks"])
        cells["ablations"] = "%s; worst head L%d H%d %+.3f bits" % (blocks, worst["layer"], worst["head"],
                                                                   worst["delta_entropy_mae_bits"])
    if t:
        cells["Q/V gradient"] = "|∇W_Q|/|∇W_V| early %s" % ", ".join("%.2f" % x for x in t["grad_q_over_v_early"])
    if d:
        kinds = ("real", "random_tokens", "shuffled_labels")
        num = lambda x, fmt, scale=1: "—" if x is None else fmt % (scale * x)  # NaN (e.g. one cluster) is null in the JSON
        cells["detector"] = "silhouette real %s, random %s, shuffled %s; fires %s / %s / %s" % tuple(
            [num(d[k]["silhouette"], "%.3f") for k in kinds] + [num(d[k]["fire_rate"], "%.0f%%", 100) for k in kinds])
    return cells


def main():
    names = [os.path.basename(os.path.normpath(a)) for a in sys.argv[1:]]
    cols = [column(n) for n in names]
    rows = ["model", "key frames", "focusing", "value manifold", "curvature", "entropy probe", "frame vs precision",
            "ablations", "Q/V gradient", "detector"]
    print("| claim | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for r in rows:
        print("| %s | %s |" % (r, " | ".join(c.get(r, "—").replace("|", "\\|") for c in cols)))


if __name__ == "__main__":
    main()

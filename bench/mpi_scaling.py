"""Data-parallel scaling on one machine: a bwt train step as 1 process x T threads against N MPI
ranks x T/N threads each, on the configs of bench/run.py, interleaved over rounds; medians of the
per-step wall time between logged steps (evaluations excluded), the all-reduce time per step and
the bytes each rank sums, from the MPI build's own report. Standard library only.

    python3 bench/mpi_scaling.py [--ranks 2] [--threads 2] [--rounds 3] [--configs small,mid,paper]

Needs build/bwt and build-mpi/bwt (scripts/setup.sh --mpi). Writes bench/mpi_results.json."""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile

CONFIGS = {  # bench/run.py's, on the bijection (V=20, L=19)
    "small": ("--d-model 64 --layers 2 --heads 4 --batch 64", 120),
    "mid": ("--d-model 128 --layers 4 --heads 4 --batch 64", 60),
    "paper": ("--d-model 192 --layers 6 --heads 6 --batch 128", 24),
}
WARMUP = 4  # steps before the timed window


def step_times(run_dir, log_every):
    """Seconds per step between consecutive logged steps after the warmup."""
    points = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "loss" in j and j["step"] >= WARMUP:
                points.append((j["step"], j["elapsed_s"]))
    return [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(points, points[1:])]


def run(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return p.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="threads of the one process; each rank gets threads/ranks")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--configs", default="small,mid,paper")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    serial, mpi = os.path.join(root, "build/bwt"), os.path.join(root, "build-mpi/bwt")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none")
    per_rank = max(1, a.threads // a.ranks)
    results = {}
    tmp = tempfile.mkdtemp(prefix="bwt_mpi_")
    try:
        for name in a.configs.split(","):
            flags, steps = CONFIGS[name]
            log_every = max(1, steps // 12)
            common = f"--task bijection {flags} --steps {steps} --log-every {log_every} --eval-seqs 64 --ckpt-every 0".split()
            times = {"serial": [], "mpi": []}
            sums_ms, sums_mb = [], []
            for r in range(a.rounds):
                out = os.path.join(tmp, f"{name}_{r}_serial")
                run([serial, "train", *common, "--threads", str(a.threads), "--out", out], env)
                times["serial"] += step_times(out, log_every)
                out = os.path.join(tmp, f"{name}_{r}_mpi")
                err = run(["mpirun", "--oversubscribe", "-np", str(a.ranks), mpi, "train", *common,
                           "--threads", str(per_rank), "--out", out], env)
                times["mpi"] += step_times(out, log_every)
                m = re.search(r"gradient sums over \d+ ranks: (\d+), ([0-9.]+) ms and ([0-9.]+) MB each", err)
                if m:
                    sums_ms.append(float(m.group(2)))
                    sums_mb.append(float(m.group(3)))
            s, p = statistics.median(times["serial"]), statistics.median(times["mpi"])
            results[name] = {"flags": flags, "serial_threads": a.threads, "ranks": a.ranks, "threads_per_rank": per_rank,
                             "serial_s_per_step": s, "mpi_s_per_step": p, "speedup": s / p,
                             "allreduce_ms_per_step": statistics.median(sums_ms) if sums_ms else None,
                             "allreduce_mb_per_step": sums_mb[0] if sums_mb else None,
                             "serial_all": times["serial"], "mpi_all": times["mpi"]}
            print(f"{name}: done", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n| config | 1 process x {a.threads} threads, s/step | {a.ranks} ranks x {per_rank} threads, s/step "
          "| ratio | all-reduce ms/step (incl. waiting) | MB summed per rank per step |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        ar = f"{r['allreduce_ms_per_step']:.2f}" if r["allreduce_ms_per_step"] is not None else "—"
        mb = f"{r['allreduce_mb_per_step']:.3f}" if r["allreduce_mb_per_step"] is not None else "—"
        print(f"| {name} | {r['serial_s_per_step']:.4f} | {r['mpi_s_per_step']:.4f} | {r['speedup']:.2f}x | {ar} | {mb} |")
    with open(os.path.join(root, "bench/mpi_results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

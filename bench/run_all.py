"""Run every benchmark of bench/ (`make bench`), each in its own process with a time budget.

Each script writes its own bench/results/*.json; this runner records, in
bench/results/run_all.json, which ran, their exit status, wall time, whether the budget
stopped them and which result files they (re)wrote, plus the machine (cores, load).
Sizes are chosen so that the whole suite stays under ~12 minutes on a 2-core machine;
`--full` uses each script's own defaults (longer), `--only a,b` runs a subset.

    .venv/bin/python bench/run_all.py [--full] [--only bench_qa,bench_stages]

bench_depth_gpu runs its GPU study when CUDA is available (else its CPU smoke check).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"

#: name -> (arguments for the ~12-minute suite, time budget in seconds)
SUITE: dict[str, tuple[list[str], int]] = {
    "bench_lift_core": (["--scenes", "16"], 150),
    "bench_stages": ([], 200),
    "bench_curves": ([], 240),
    "bench_qa": (["--images", "500"], 90),
    "bench_pipeline": (["--images", "96", "--unique", "8", "--per-shard", "24"], 240),
    "bench_index": (["--annotations", "100000", "--images", "15000"], 150),
    "bench_scale": (["--annotations", "200000", "--images", "30000", "--finalize-images", "30000"], 180),
    "bench_eval_viz": (["--images", "400"], 120),
    "bench_eval_baseline": (["--scenes", "12"], 150),
    "bench_real": (["--scenes", "6"], 420),
    "bench_qa_truth": (["--scenes", "6", "--seeds", "3"], 240),
    "bench_llm": (["--n", "600"], 120),
    "bench_export": ([], 60),
    "bench_depth_gpu": ([], 300),
}


def cuda_available() -> bool:
    try:
        p = subprocess.run([sys.executable, "-c", "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"],
                           capture_output=True, timeout=120)
        return p.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def snapshot() -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in RESULTS.glob("*.json")}


def run_one(name: str, args: list[str], budget: int) -> dict:
    script = BENCH / f"{name}.py"
    if not script.is_file():
        return {"status": "missing"}
    before = snapshot()
    t0 = time.time()
    try:
        p = subprocess.run([sys.executable, str(script), *args], cwd=str(ROOT), capture_output=True, text=True,
                           timeout=budget)
        status = "ok" if p.returncode == 0 else f"exit_{p.returncode}"
        tail = (p.stdout + p.stderr)[-1500:]
    except subprocess.TimeoutExpired as e:
        status = "over_budget"
        tail = ((e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace"))[-1500:]
    after = snapshot()
    written = sorted(k for k, v in after.items() if before.get(k) != v and k != "run_all.json")
    return {"status": status, "args": args, "budget_s": budget, "wall_s": round(time.time() - t0, 1),
            "results_written": written, "output_tail": tail if status != "ok" else tail[-300:]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="each script's own default sizes (longer)")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(SUITE)
    gpu = cuda_available() if "bench_depth_gpu" in names else False
    report = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "load_avg_1m_at_start": os.getloadavg()[0],
                          "cuda": gpu},
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "benchmarks": {}}
    t0 = time.time()
    for name in names:
        if name not in SUITE:
            report["benchmarks"][name] = {"status": "unknown"}
            continue
        bargs, budget = SUITE[name]
        if args.full:
            bargs, budget = [], budget * 4
        if name == "bench_depth_gpu" and not gpu:
            bargs = ["--cpu-smoke"]
        print(f"[run_all] {name} {' '.join(bargs)} (budget {budget} s)", flush=True)
        report["benchmarks"][name] = r = run_one(name, bargs, budget)
        print(f"[run_all] {name}: {r['status']} in {r.get('wall_s')} s -> {r.get('results_written')}", flush=True)
    report["wall_s"] = round(time.time() - t0, 1)
    report["load_avg_1m_at_end"] = os.getloadavg()[0]
    (RESULTS / "run_all.json").write_text(json.dumps(report, indent=2) + "\n")
    failed = [n for n, r in report["benchmarks"].items() if r["status"] != "ok"]
    print(f"[run_all] done in {report['wall_s']} s; not ok: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

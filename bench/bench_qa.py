"""QA generation throughput: images/s and questions/s on one core, without rephrasing.

Synthetic ~7-object records (tilted camera, repeated categories, one rejected object) are
built first; then `generate_qa` runs over them in one process. The target of issue 7 is
>= 1000 images/s per core. As a same-run reference the script also times a JSON
round trip of each record (the least any pipeline stage does per image) and reports the
ratio. Writes bench/results/bench_qa.json.

    .venv/bin/python bench/bench_qa.py [--images 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lifting.qa import QAConfig, generate_qa  # noqa: E402
from lifting.qa.templates import get_bank  # noqa: E402
from test_qa_scenes import random_record  # noqa: E402


def timed(fn, records, repeat=3):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = [fn(r) for r in records]
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    except (AttributeError, OSError):
        pass
    records = [random_record(s, n_objects=7, n_rejected=1) for s in range(args.images)]
    get_bank()  # templates compile once per process, outside the timing
    results = {"images": args.images, "objects_per_image": 7, "configs": {}}
    t_ref, _ = timed(lambda r: json.loads(json.dumps(r)), records)
    results["reference_json_roundtrip_images_per_s"] = args.images / t_ref
    for name, cfg in {"default_cot": QAConfig(), "no_cot": QAConfig(cot=False),
                      "imperial": QAConfig(units="imperial")}.items():
        t, samples = timed(lambda r: generate_qa(r, cfg), records)
        nq = sum(len(s["questions"]) for s in samples if s)
        results["configs"][name] = {
            "seconds": t,
            "images_per_s_per_core": args.images / t,
            "questions_per_s_per_core": nq / t,
            "questions_per_image": nq / args.images,
            "ratio_time_vs_json_roundtrip": t / t_ref,
        }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_qa.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

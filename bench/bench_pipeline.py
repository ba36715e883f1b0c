"""Throughput of the lift pipeline with sensor depth on synthetic scenes.

Measures, in one run on this machine:
  - plain loop: read depth + lifting.lift.lift_image per image, no Beam, no writing (reference)
  - Beam, 1 worker (in_memory) and 2 workers (multi_processing), full pipeline incl. shards
Reports images/s, the 2-vs-1 worker scaling ratio and Beam's overhead over the plain loop
(target <= 25 % on the local runner). Writes bench/results/bench_pipeline.json.

    .venv/bin/python bench/bench_pipeline.py [--scenes 48] [--size 320x240]
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def plain_loop(records: list[dict]) -> float:
    from lifting.lift import LiftInputError, lift_image
    from lifting.records import ImageRecord
    from lifting.sources.depth_io import read_depth

    t = time.perf_counter()
    for r in records:
        depth = read_depth(r["depth_path"], r["depth_scale"])
        try:
            lift_image(ImageRecord.from_dict(r), depth, np.asarray(r["K"]), K_source="dataset", depth_source="sensor")
        except LiftInputError:
            pass
    return time.perf_counter() - t


def beam_run(ann: Path, out: Path, workers: int, per_shard: int) -> tuple[float, dict]:
    from pipelines import lift_pipeline

    argv = ["--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
            "--out", str(out), "--depth-model", "sensor", "--samples-per-shard", str(per_shard),
            "--no-progress", "--workers", str(workers),
            f"--direct_running_mode={'multi_processing' if workers > 1 else 'in_memory'}"]
    t = time.perf_counter()
    stats = lift_pipeline.run(argv)
    return time.perf_counter() - t, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=48)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--per-shard", type=int, default=8)
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from lifting.sources import open_source
    from lifting.synthetic import SceneConfig, write_dataset

    w, h = (int(x) for x in a.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        ann = write_dataset(tmp / "data", n_scenes=a.scenes, seed=1, config=SceneConfig(width=w, height=h))
        records = [r.to_dict() for r in open_source("omni3d", annotations=str(ann), images=str(ann.parent / "images")
                                                    ).iter_records() if hasattr(r, "objects")]
        t_loop = plain_loop(records)
        t1, s1 = beam_run(ann, tmp / "o1", 1, a.per_shard)
        t2, s2 = beam_run(ann, tmp / "o2", 2, a.per_shard)
        n = len(records)
        res = {
            "images": n, "image_size": a.size, "samples_per_shard": a.per_shard,
            "lifted": s1["images"]["lifted"], "failed": s1["images"]["failed"],
            "plain_loop_images_per_s": n / t_loop,
            "beam_1_worker_images_per_s": n / t1, "beam_2_workers_images_per_s": n / t2,
            "scaling_2_vs_1": t1 / t2,
            "beam_overhead_1_worker": t1 / t_loop - 1.0,
            "beam_overhead_2_workers_vs_loop": t2 / t_loop - 1.0,
            "overhead_target": 0.25,
            "note": "wall times include pipeline start-up, planning, shard/parquet writing and finalize",
        }
        out = Path(__file__).resolve().parent / "results" / "bench_pipeline.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

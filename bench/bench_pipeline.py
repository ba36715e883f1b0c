"""Throughput of the lift pipeline with sensor depth on synthetic 640x480 RGB-D scenes.

Measures, in one run on this machine (all figures also as ratios to the plain loop):
  - plain loop: read depth + lifting.lift.lift_image per image, no Beam, no writing (reference)
  - plain loop + writing: the same plus sinks.write_repository_unit per unit (validation,
    tar, parquet parts) — what the pipeline does besides Beam itself
  - Beam, 1 worker (in_memory) and 2 workers (multi_processing), full `lift` incl. planning,
    shards, finalize; each also on a tiny input (`--probe` images) to separate the fixed
    start-up cost from the per-image rate (steady = (N - probe) / (T - T_probe))
Reports images/s, the 2-vs-1 worker scaling ratio and Beam's overhead over the plain loop
(target <= 25 % on the local runner). Writes bench/results/bench_pipeline.json.

Scenes: `--unique` scenes are rendered once (ray casting is slow) and referenced by
`--images` image entries with distinct ids, so the lifting work per image is real and the
set is large enough for start-up to amortise.

    .venv/bin/python bench/bench_pipeline.py [--images 240] [--unique 24] [--per-shard 40]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def make_dataset(root: Path, n_images: int, n_unique: int, size: tuple[int, int]) -> Path:
    """Render n_unique scenes and write annotations with n_images entries cycling over them."""
    from lifting.synthetic import SceneConfig, write_dataset

    ann = write_dataset(root, n_scenes=n_unique, seed=1, config=SceneConfig(width=size[0], height=size[1]))
    d = json.loads(ann.read_text())
    by_img: dict = {}
    for a in d["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    images, anns = [], []
    for i in range(n_images):
        src = d["images"][i % len(d["images"])]
        images.append({**src, "id": i + 1})
        for a in by_img.get(src["id"], []):
            anns.append({**a, "id": len(anns) + 1, "image_id": i + 1})
    d["images"], d["annotations"] = images, anns
    out = root / "annotations_bench.json"
    out.write_text(json.dumps(d))
    return out


def load_records(ann: Path) -> list[dict]:
    from lifting.sources import open_source

    recs = [r.to_dict() for r in open_source("omni3d", annotations=str(ann), images=str(ann.parent / "images"))
            .iter_records() if hasattr(r, "objects")]
    return sorted(recs, key=lambda r: r["key"])


def plain_loop(records: list[dict], per_shard: int, out: Path | None) -> float:
    """Seconds to lift every record in a loop; with `out`, also write each unit's shard + parts."""
    from lifting.lift import LiftInputError, lift_image
    from lifting.records import ImageRecord
    from lifting.sources.depth_io import read_depth
    from pipelines import sinks
    from pipelines.transforms import _load_for

    t = time.perf_counter()
    results = []
    for i, r in enumerate(records):
        depth = read_depth(r["depth_path"], r["depth_scale"])
        try:
            rec = lift_image(ImageRecord.from_dict(r), depth, np.asarray(r["K"]), K_source="dataset",
                             depth_source="sensor")
            results.append(sinks.ImageResult(r["key"], "lifted" if rec["status"] == "lifted" else "rejected",
                                             record=rec, image_path=r["image_path"]))
        except LiftInputError as e:
            results.append(sinks.ImageResult(r["key"], "failed", error={"reason": e.reason, "detail": "",
                                                                        "stage": "lift"}))
        if out is not None and (len(results) == per_shard or i == len(records) - 1):
            sinks.write_repository_unit(out, i // per_shard, results, _load_for)
            results = []
    return time.perf_counter() - t


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children (Beam's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def beam_run(ann: Path, out: Path, workers: int, per_shard: int, limit: int | None = None) -> tuple[float, dict]:
    from pipelines import lift_pipeline

    argv = ["--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
            "--out", str(out), "--depth-model", "sensor", "--samples-per-shard", str(per_shard),
            "--no-progress", "--workers", str(workers),
            f"--direct_running_mode={'multi_processing' if workers > 1 else 'in_memory'}"]
    if limit:
        argv += ["--limit", str(limit)]
    t = time.perf_counter()
    stats = lift_pipeline.run(argv)
    return time.perf_counter() - t, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=240)
    ap.add_argument("--unique", type=int, default=24)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--per-shard", type=int, default=40)
    ap.add_argument("--probe", type=int, default=8, help="images of the start-up probe runs")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    w, h = (int(x) for x in a.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        t0 = time.perf_counter()
        ann = make_dataset(tmp / "data", a.images, a.unique, (w, h))
        t_gen = time.perf_counter() - t0
        load_records(ann)  # warm-up: imports
        t = time.perf_counter()
        records = load_records(ann)
        t_read = time.perf_counter() - t
        n = len(records)
        # warm-up (imports, size priors, schema compilation) so the loop measures steady work
        plain_loop(records[:2], a.per_shard, tmp / "warm")
        load0 = os.getloadavg()[0]
        c = cpu_s()
        t_loop = plain_loop(records, a.per_shard, None)
        c_loop = cpu_s() - c
        t_loop_write = plain_loop(records, a.per_shard, tmp / "loop_out")
        beam_run(ann, tmp / "warm_beam", 1, a.per_shard, 2)  # first run in a process pays Beam's imports
        t1p, _ = beam_run(ann, tmp / "p1", 1, a.per_shard, a.probe)
        c = cpu_s()
        t1, s1 = beam_run(ann, tmp / "o1", 1, a.per_shard)
        c1 = cpu_s() - c
        t2p, _ = beam_run(ann, tmp / "p2", 2, a.per_shard, a.probe)
        c = cpu_s()
        t2, s2 = beam_run(ann, tmp / "o2", 2, a.per_shard)
        c2 = cpu_s() - c
        load1 = os.getloadavg()[0]
        same = all((tmp / "o1" / "repository" / p.name).read_bytes() == p.read_bytes()
                   for p in sorted((tmp / "o2" / "repository").glob("shard-*.tar")))
        steady1 = (n - a.probe) / (t1 - t1p)
        steady2 = (n - a.probe) / (t2 - t2p)
        loop_rate = n / t_loop
        res = {
            "images": n, "unique_scenes": a.unique, "image_size": a.size, "samples_per_shard": a.per_shard,
            "lifted": s1["images"]["lifted"], "rejected": s1["images"]["rejected"], "failed": s1["images"]["failed"],
            "objects": s1["objects"]["total"],
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "dataset_render_s": round(t_gen, 1),
            "load_average_1min_before_after": [round(load0, 2), round(load1, 2)],
            "source_read_s": round(t_read, 2),
            "source_read_vs_loop": round(t_read / t_loop, 3),
            "plain_loop_images_per_s": round(loop_rate, 3),
            "cpu_s_per_image": {"plain_loop": round(c_loop / n, 4), "beam_1_worker": round(c1 / n, 4),
                                "beam_2_workers": round(c2 / n, 4)},
            "beam_cpu_overhead_1_worker": round(c1 / c_loop - 1.0, 3),
            "beam_cpu_overhead_2_workers": round(c2 / c_loop - 1.0, 3),
            "plain_loop_with_writing_images_per_s": round(n / t_loop_write, 3),
            "writing_cost_vs_loop": round(t_loop_write / t_loop - 1.0, 3),
            "beam_1_worker_images_per_s": round(n / t1, 3),
            "beam_2_workers_images_per_s": round(n / t2, 3),
            "scaling_2_vs_1": round(t1 / t2, 3),
            "beam_overhead_1_worker": round(t1 / t_loop - 1.0, 3),
            "beam_overhead_2_workers_vs_loop": round(t2 / t_loop - 1.0, 3),
            "startup_probe_images": a.probe,
            "startup_1_worker_s": round(t1p, 2), "startup_2_workers_s": round(t2p, 2),
            "beam_1_worker_steady_images_per_s": round(steady1, 3),
            "beam_2_workers_steady_images_per_s": round(steady2, 3),
            "steady_scaling_2_vs_1": round(steady2 / steady1, 3),
            "steady_overhead_1_worker": round(loop_rate / steady1 - 1.0, 3),
            "shards_identical_1_vs_2_workers": same,
            "overhead_target": 0.25,
            "note": "wall times include pipeline start-up, planning, shard/parquet writing and finalize; "
                    "'steady' rates subtract a probe run on --probe images (start-up and fixed costs)",
        }
        out = Path(__file__).resolve().parent / "results" / "bench_pipeline.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: the driver at scale (issue 16) - planning and finalize memory and time.

    .venv/bin/python bench/bench_scale.py [--annotations 1050000] [--images 150000]
                                          [--finalize-images 100000]

Generates (streaming) a COCO-format JSON (bench_index.generate: annotations before images,
polygons and crowd RLEs; no image files are needed for planning), then, each step in a fresh
child process so its peak RSS is its own:
  plan_first   `lift_pipeline.plan_units` for `--source coco` as `lift3d lift` calls it: the
               input is above --plan-in-memory-mb, so the driver streams it into the Parquet
               index OUT/_index (lifting.sources.index.build_index) and plans from it. The
               full input (above the reader's 32 MB in_memory_bytes) is spilled to 64 MB
               buckets that `lift_pipeline.index_workers` processes assemble (their CPU time
               and largest peak RSS are reported beside the driver's); the tenth is grouped
               in memory in the driver, a different path;
  plan         the same call again (the index is reused): planning proper;
  plan_small   the same two calls on a tenth of the input, to show planning memory is flat;
  reference    the in-memory plan of the full input (every record read on the driver and
               carried in the units, what smaller inputs get), unless --skip-in-memory;
  finalize     `sinks.finalize_repository` over the parts of --finalize-images images in
               units of 1000 (generated in another child: stats, objects Parquet with ~7
               rows per image, rejected and errors JSON lines), i.e. stats.json, the
               index/objects.parquet, rejected/ and errors/ streamed from the parts;
  baseline     a child that only imports the pipeline modules (the floor of every RSS).
Writes bench/results/bench_scale.json with each step's wall time and peak RSS (MB), and
the targets of issue 16: driver peak RSS <= 1 GB and flat, planning <= 60 s per 1M
annotations (also with the first run's index build), finalize <= 2 min per 100k images.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_index import _PeakRSS, _child, generate  # noqa: E402


def _settings(annotations: str, out: str, in_memory_mb: float):
    from pipelines import options as opt

    s = opt.Settings()
    s.input.source, s.input.annotations, s.input.images = "coco", annotations, os.path.dirname(annotations)
    s.input.plan_in_memory_mb = in_memory_mb
    s.output.out = out
    s.models.depth_model = "sensor"  # no depth-model lookup: planning only
    return s


def _run_plan(annotations: str, out: str, in_memory_mb: float, q) -> None:
    import resource

    from pipelines import lift_pipeline

    load = os.getloadavg()[0]
    with _PeakRSS() as m:
        t0, c0 = time.perf_counter(), time.process_time()
        settings = _settings(annotations, out, in_memory_mb)
        plan = lift_pipeline.plan_units(settings)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the index build's worker processes, if any
    q.put({"peak_rss_mb": round(m.peak / 2**20, 1), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "index_workers_cpu_s": round(workers.ru_utime + workers.ru_stime, 2),
           "index_workers": lift_pipeline.index_workers(settings),
           "index_worker_peak_rss_mb": round(workers.ru_maxrss / 1024, 1), "load_avg_1m_before": round(load, 2),
           "units": len(plan.units), "images": plan.n_images, "source_errors": len(plan.source_errors)})


def _run_imports(q) -> None:
    with _PeakRSS() as m:
        from pipelines import lift_pipeline, sinks  # noqa: F401
    q.put({"peak_rss_mb": round(m.peak / 2**20, 1)})


def _write_parts(root: str, n_images: int, per_unit: int, q) -> None:
    """Parts of a finished run of `n_images` images, as write_repository_unit leaves them."""
    import random

    from pipelines import sinks

    rnd = random.Random(0)
    t0 = time.perf_counter()
    units = 0
    for u, start in enumerate(range(0, n_images, per_unit)):
        keys = [f"coco_{i:012d}" for i in range(start, min(n_images, start + per_unit))]
        rows, rejected, failed = [], [], 0
        for k in keys:
            for j in range(rnd.randint(3, 11)):
                kept = rnd.random() < 0.8
                rows.append({"key": k, "shard": sinks.shard_name(u), "source": "coco", "image_id": k[5:],
                             "object_id": f"{k}_{j}", "category": f"class_{j}", "category_raw": str(j),
                             "source_ann_id": str(j), "status": "kept" if kept else "rejected",
                             "reason": None if kept else "too_few_points", "image_status": "lifted",
                             "bbox_xyxy": [1.0, 2.0, 30.0, 40.0], "center_cam": [0.1, 0.2, 3.0] if kept else None,
                             "dimensions": [0.5, 0.6, 0.7] if kept else None, "yaw": 0.1 if kept else None,
                             "depth_source": "model", "K_source": "dataset", "proj_iou": 0.8, "n_points": 900})
                if not kept:
                    rejected.append({"key": k, "level": "object", "object_id": f"{k}_{j}", "category": f"class_{j}",
                                     "reason": "too_few_points"})
        n_obj = len(rows)
        n_rej = len(rejected)
        sinks.write_bytes_atomic(sinks.part_path(root, u, "objects.parquet"), sinks._parquet_bytes(rows))
        sinks.write_bytes_atomic(sinks.part_path(root, u, "rejected.jsonl"), sinks._jsonl(rejected))
        sinks.write_bytes_atomic(sinks.part_path(root, u, "errors.jsonl"), b"")
        stats = {"unit": u, "shard": {"name": sinks.shard_name(u), "samples": len(keys) - failed,
                                      "bytes": 150_000 * len(keys), "sha256": "0" * 64},
                 "images": {"in": len(keys), "lifted": len(keys), "rejected": 0, "failed": 0},
                 "images_failed_by_reason": {}, "images_rejected_by_reason": {},
                 "objects": {"total": n_obj, "kept": n_obj - n_rej, "rejected": n_rej},
                 "objects_rejected_by_reason": {"too_few_points": n_rej} if n_rej else {},
                 "objects_in": n_obj, "objects_of_failed_images_by_reason": {}}
        sinks.write_json_atomic(sinks.part_path(root, u, "stats.json"), stats)
        units += 1
    q.put({"units": units, "wall_s": round(time.perf_counter() - t0, 1)})


def _run_finalize(root: str, units: int, q) -> None:
    from pipelines import sinks

    with _PeakRSS() as m:
        t0 = time.perf_counter()
        stats = sinks.finalize_repository(root, config={"bench": True}, versions={"lift3d": "bench"},
                                          expected_units=range(units))
        wall = time.perf_counter() - t0
    q.put({"peak_rss_mb": round(m.peak / 2**20, 1), "wall_s": round(wall, 2), "images": stats["images"]["in"],
           "objects": stats["objects"]["total"], "balanced": stats["objects_accounting"]["balanced"],
           "index_mb": round(os.path.getsize(os.path.join(root, "index", "objects.parquet")) / 2**20, 1)})


def _plans(work: Path, n_ann: int, n_img: int, tag: str, in_memory: bool) -> dict:
    src = work / tag / "instances_bench.json"
    src.parent.mkdir(parents=True)
    t0 = time.perf_counter()
    generate(src, n_ann, n_img)
    gen = time.perf_counter() - t0
    out = str(work / tag / "out")
    first = _child(_run_plan, str(src), out, 0.0)  # 0: the index path, whatever the size
    again = _child(_run_plan, str(src), out, 0.0)
    old = _child(_run_plan, str(src), out + "-mem", float("inf")) if in_memory else None
    return {"plan_in_memory_reference": old, "annotations": n_ann, "images": n_img, "json_mb": round(src.stat().st_size / 2**20, 1),
            "generate_s": round(gen, 1), "plan_first_with_index_build": first, "plan": again,
            "plan_s_per_1M_annotations": round(again["wall_s"] * 1e6 / n_ann, 2),
            "plan_first_s_per_1M_annotations": round(first["wall_s"] * 1e6 / n_ann, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", type=int, default=1_050_000)
    ap.add_argument("--images", type=int, default=150_000)
    ap.add_argument("--finalize-images", type=int, default=100_000)
    ap.add_argument("--workdir", default=None, help="where the generated files go (temporary)")
    ap.add_argument("--skip-in-memory", action="store_true",
                    help="skip the reference: the in-memory plan (records read on the driver), as below the cut")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lift3d-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        baseline = _child(_run_imports)
        full = _plans(work, args.annotations, args.images, "full", not args.skip_in_memory)
        small = _plans(work, args.annotations // 10, args.images // 10, "tenth", False)
        root = str(work / "finalize" / "repository")
        parts = _child(_write_parts, root, args.finalize_images, 1000)
        fin = _child(_run_finalize, root, parts["units"])
        first = full["plan_first_with_index_build"]
        peak = max(first["peak_rss_mb"], full["plan"]["peak_rss_mb"], fin["peak_rss_mb"])
        result = {
            "benchmark": "bench_scale",
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_avg_1m": os.getloadavg()[0]},
            "imports_only": baseline, "full": full, "tenth": small,
            "finalize": {**fin, "parts_units": parts["units"], "parts_generate_s": parts["wall_s"],
                         "s_per_100k_images": round(fin["wall_s"] * 1e5 / args.finalize_images, 1)},
            "targets": {
                "driver_peak_rss_mb": peak, "driver_peak_rss_le_1GB": peak <= 1024,
                "plan_rss_full_over_tenth": round(full["plan"]["peak_rss_mb"] / small["plan"]["peak_rss_mb"], 2),
                "plan_s_per_1M_annotations": full["plan_s_per_1M_annotations"],
                "plan_le_60s_per_1M": full["plan_s_per_1M_annotations"] <= 60,
                "plan_with_index_build_s_per_1M": full["plan_first_s_per_1M_annotations"],
                "plan_with_index_build_le_60s_per_1M": full["plan_first_s_per_1M_annotations"] <= 60,
                # an upper bound: the driver's and each worker's peaks need not coincide
                "plan_first_driver_plus_index_workers_rss_mb": round(
                    first["peak_rss_mb"] + first["index_workers"] * first["index_worker_peak_rss_mb"], 1),
                "finalize_s_per_100k_images": round(fin["wall_s"] * 1e5 / args.finalize_images, 1),
                "finalize_le_120s_per_100k": fin["wall_s"] * 1e5 / args.finalize_images <= 120,
            },
        }
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_scale.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

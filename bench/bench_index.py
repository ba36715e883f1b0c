"""Benchmark: streaming Parquet indexing of a large COCO-format file (peak RSS, annotations/s).

    .venv/bin/python bench/bench_index.py [--annotations 1050000] [--images 150000]

Generates (streaming, never in memory) a COCO-format JSON with `annotations` BEFORE
`images` (the harder order) - polygons, crowd RLEs, boxes - then, each in a fresh child
process so peak RSS is that run's own:
  index      lifting.sources.index.build_index("coco", ...) with the default settings
             (ijson streaming, 64 MB on-disk buckets, zstd Parquet partitions);
  reference  the naive approach: json.load of the whole file and one loop over it.
Writes bench/results/bench_index.json: peak RSS of both (MB), their ratio, wall time,
annotations/s, and the index summary (counts, accounting identity).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generate(path: Path, n_ann: int, n_img: int, seed: int = 0) -> None:
    """Write a COCO-format file: annotations first, then images, then categories."""
    import random

    rnd = random.Random(seed)
    W, H = 640, 480
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"info": {"description": "lift3d bench"}, "annotations": [')
        for i in range(n_ann):
            img = 1 + (i * 7919) % n_img
            x, y = rnd.uniform(0, W - 60), rnd.uniform(0, H - 60)
            w, h = rnd.uniform(4, 59), rnd.uniform(4, 59)
            ann = {"id": i + 1, "image_id": img, "category_id": 1 + i % 80, "bbox": [round(x, 2), round(y, 2),
                   round(w, 2), round(h, 2)], "area": round(w * h, 2), "iscrowd": 0}
            if i % 200 == 0:
                top = int(y) * W + int(x)
                ann["iscrowd"] = 1
                ann["segmentation"] = {"size": [H, W], "counts": [top, 3, W * H - top - 3]}
            else:
                ann["segmentation"] = [[round(v, 2) for v in (x, y, x + w, y, x + w, y + h, x + w / 2, y + h * 1.0, x, y + h)]]
            f.write(("," if i else "") + json.dumps(ann, separators=(",", ":")))
        f.write('], "images": [')
        for j in range(1, n_img + 1):
            f.write(("," if j > 1 else "") + json.dumps(
                {"id": j, "file_name": f"{j:012d}.jpg", "width": W, "height": H, "license": 1}))
        f.write('], "categories": [')
        f.write(",".join(json.dumps({"id": c, "name": f"class_{c}"}) for c in range(1, 81)))
        f.write("]}")


class _PeakRSS:
    """Peak resident set size (bytes): the max of getrusage and a 20 ms sampling thread."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()
        self.peak = max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _run_index(path: str, out_dir: str, q) -> None:
    from lifting.sources.index import build_index

    with _PeakRSS() as m:
        t0 = time.perf_counter()
        s = build_index("coco", path, os.path.dirname(path), out_dir, overwrite=True)
        wall = time.perf_counter() - t0
    q.put({"peak_rss_mb": round(m.peak / 2**20, 1), "wall_s": round(wall, 2), "summary": s})


def _run_reference(path: str, q) -> None:
    with _PeakRSS() as m:
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            d = json.load(f)
        images = {i["id"]: i for i in d["images"]}
        n = sum(1 for a in d["annotations"] if a["image_id"] in images)
        wall = time.perf_counter() - t0
    q.put({"peak_rss_mb": round(m.peak / 2**20, 1), "wall_s": round(wall, 2), "annotations": n})


def _child(target, *args):
    """target(*args, q) in a fresh process; what it puts on q. A child that dies without
    answering (killed for memory, a crash in native code) ends the benchmark with its exit
    code instead of leaving it waiting for ever."""
    import queue

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    while True:
        try:
            out = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive():
                raise SystemExit(f"benchmark step {target.__name__} died (exit code {p.exitcode}) without a result")
    p.join()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", type=int, default=1_050_000)
    ap.add_argument("--images", type=int, default=150_000)
    ap.add_argument("--workdir", default=None, help="where the generated file and index go (temporary)")
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lift3d-bench-index-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = work / "instances_bench.json"
        t0 = time.perf_counter()
        generate(src, args.annotations, args.images)
        gen_s = time.perf_counter() - t0
        size_mb = src.stat().st_size / 2**20
        idx = _child(_run_index, str(src), str(work / "index"))
        s = idx.pop("summary")
        ref = None if args.skip_reference else _child(_run_reference, str(src))
        result = {
            "benchmark": "bench_index",
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "input": {"annotations": args.annotations, "images": args.images, "json_mb": round(size_mb, 1),
                      "order": "annotations before images", "generate_s": round(gen_s, 1)},
            "index": {**idx, "annotations_per_s": round(s["annotations_in"] / idx["wall_s"], 0),
                      "partitions": len(s["partitions"]),
                      "index_mb": round(sum(f.stat().st_size for f in (work / "index").iterdir()) / 2**20, 1),
                      "counts": {k: s[k] for k in ("images_in", "annotations_in", "images_ok", "objects_ok",
                                                   "image_errors", "object_errors", "accounting_ok")}},
            "reference_json_load": ref,
        }
        if ref:
            result["ratios"] = {"peak_rss_index_over_json_load": round(idx["peak_rss_mb"] / ref["peak_rss_mb"], 3),
                                "wall_index_over_json_load": round(idx["wall_s"] / ref["wall_s"], 2)}
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_index.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""N3D-VLM export throughput and point-map size (issue 17): `lift3d export --format n3d-vlm`.

Builds small repositories of realistic indoor scenes at the release's demo size (1024x683)
and at COCO's usual size (640x480), exact depth, through the real commands (`lift3d synth`, `lift --write-depth`, `qa --style
n3d`), then times `pipelines.export.export_unit` (read both shards, decode the depth PNG, make
the point map, write the image, the .npz and the rows) in this process pinned to one core, in
CPU time (time.process_time), best of --repeat, for point maps at 640 px long side
(the default) and at full size, stored and deflated. Target: >= 200 samples/s/core at 640 px.
As a same-run reference it times reading the two shards alone (iter_shard_samples).
Writes bench/results/bench_export.json.

    .venv/bin/python bench/bench_export.py [--scenes 6] [--repeat 5] [--sizes 1024x683,640x480]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lifting.repository import iter_shard_samples, list_shards  # noqa: E402
from pipelines.cli import main as lift3d  # noqa: E402
from pipelines.export import ExportConfig, export_unit, plan_units  # noqa: E402


def build(root: Path, scenes: int, size: tuple[int, int] = (1024, 683)) -> tuple[Path, Path]:
    from lifting.synthetic import SceneConfig, write_dataset

    data, out = root / "data", root / "out"
    write_dataset(data, n_scenes=scenes, seed=7, config=SceneConfig.realistic_indoor(*size))
    assert lift3d(["lift", "--source", "omni3d", "--annotations", str(data / "annotations.json"), "--images",
                   str(data / "images"), "--out", str(out), "--workers", "1", "--no-progress", "--write-depth",
                   "--samples-per-shard", str(scenes)]) == 0
    assert lift3d(["qa", "--out", str(out), "--style", "n3d", "--workers", "1", "--no-progress"]) == 0
    return out / "qa", out / "repository"


def cpu_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def bench_size(tmp: Path, size: tuple[int, int], scenes: int, repeat: int) -> dict:
    """Build a repository of `scenes` images of `size` and time every export configuration."""
    import numpy as np

    t0 = time.monotonic()
    qa_dir, repo_dir = build(tmp, scenes, size)
    build_s = time.monotonic() - t0
    units = plan_units(qa_dir, repo_dir)
    n = sum(1 for _, q, _ in units for _ in iter_shard_samples(q))

    def read_only():
        for _, q, r in units:
            for _ in iter_shard_samples(q):
                pass
            for _ in iter_shard_samples(r):
                pass

    t_read = cpu_time(read_only, repeat)
    res = {"images": n, "image_size": list(size), "build_wall_s": round(build_s, 1),
           "reference_read_shards_samples_per_s": n / t_read, "configs": {}}
    configs = {"640_stored": ExportConfig(), "640_deflated": ExportConfig(compress_points=True),
               "full_stored": ExportConfig(long_side=None),
               "full_deflated": ExportConfig(long_side=None, compress_points=True)}
    for name, cfg in configs.items():
        out = tmp / f"export_{name}"
        stats = {}

        def run():
            shutil.rmtree(out, ignore_errors=True)
            for u, q, r in units:
                stats[u] = export_unit(u, q, r, str(out), cfg)

        t = cpu_time(run, repeat)
        exported = sum(s["samples_exported"] for s in stats.values())
        rows = sum(s["rows"] for s in stats.values())
        npz = sum(s["npz_bytes"] for s in stats.values())
        assert exported == n, stats
        with np.load(next(out.glob("points/*/*.npz"))) as z:
            shape = list(z["pcd"].shape)
        res["configs"][name] = {
            "cpu_s": t, "samples_per_s_per_core": n / t, "rows_per_s_per_core": rows / t,
            "rows_per_sample": rows / n, "npz_bytes_per_sample": npz / n, "npz_mb_per_s_per_core": npz / t / 1e6,
            "point_map_shape": shape, "x_reference_read": (n / t_read) / (n / t),
        }
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=8, help="images in each repository (one per size)")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes over the repository (best is kept)")
    ap.add_argument("--sizes", default="1024x683,640x480", help="image sizes WxH, comma-separated")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    except (AttributeError, OSError):
        pass
    results = {"scenes": args.scenes, "repeat": args.repeat, "cpu_count": os.cpu_count(),
               "load_avg_1m_at_start": os.getloadavg()[0], "sizes": {}}
    for size_txt in args.sizes.split(","):
        size = tuple(int(v) for v in size_txt.split("x"))
        tmp = Path(tempfile.mkdtemp(prefix="bench_export_"))
        try:
            results["sizes"][size_txt] = bench_size(tmp, size, args.scenes, args.repeat)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    results["target_640_samples_per_s_per_core"] = 200
    results["target_met_by_size"] = {k: v["configs"]["640_stored"]["samples_per_s_per_core"] >= 200
                                     for k, v in results["sizes"].items()}
    results["load_avg_1m_at_end"] = os.getloadavg()[0]
    dest = ROOT / "bench" / "results"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bench_export.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

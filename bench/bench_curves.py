"""Cost curves of the CPU side: how time (and memory) grow with the work.

All CPU time (time.process_time), BLAS/OpenMP at one thread, pinned to one core:
  objects   lift_image time per image vs objects per image (1..50; the first k objects of
            one synthetic scene with 50 objects, so the image-level work is fixed) and QA
            generation time per image vs kept objects (1..50, tests' random records);
  size      lift_image time per image vs image size 0.3..12 MP (one 640x480 scene
            nearest-upsampled: same objects, K scaled, masks and depth upsampled);
  points    lift_image time per object vs LiftConfig.max_points (250..16000) on a 4 MP image;
  rss       peak RSS (VmHWM) of a fresh worker process (imports + JPEG decode + depth +
            lift of one image) vs image size, and that of a process that only did the imports.
Each curve gets the exponent of a least-squares line on log-log axes (1.0 = linear; image
level fixed costs push it below 1). Anything clearly above 1 is a finding.

    .venv/bin/python bench/bench_curves.py [--quick]
Writes bench/results/bench_curves.json.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_lift_core import RESULTS, pin_one_core, scene_record  # noqa: E402

SIZES = [(640, 480), (1280, 960), (2048, 1536), (2880, 2160), (4000, 3000)]  # 0.3, 1.2, 3.1, 6.2, 12 MP


def loglog_exponent(x, y) -> float:
    """Slope of log(y) against log(x) (least squares)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def best_cpu(fn, repeat: int = 2) -> float:
    """Least CPU seconds of `repeat` calls of fn()."""
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def big_scene(n: int = 50, seed: int = 7):
    """A synthetic 640x480 scene with up to `n` small objects spread over a large room."""
    from lifting.synthetic import NoiseConfig, SceneConfig, generate_scene

    cfg = SceneConfig(n_objects=(n, n), distance=(1.6, 13.0), room_depth=(15.0, 16.0), room_half_width=(9.0, 10.0),
                      categories=("box", "ball", "trash can", "chair"), fov_x_deg=(80.0, 90.0))
    return generate_scene(seed, cfg, NoiseConfig.realistic())


def upsample_scene(scene, size):
    """(depth (H2, W2) float32, K (3, 3), {instance_id: mask}) of `scene` nearest-upsampled to size=(W2, H2)."""
    H, W = scene.depth.shape
    W2, H2 = size
    rows = (np.arange(H2) * H // H2)
    cols = (np.arange(W2) * W // W2)
    depth = scene.depth_noisy[rows[:, None], cols[None, :]]
    inst = scene.instance_map[rows[:, None], cols[None, :]]
    K = scene.K.copy()
    K[0] *= W2 / W
    K[1] *= H2 / H
    return depth, K, inst


def sized_record(scene, size, key):
    """ImageRecord + depth + K of `scene` at `size` (masks as COCO string RLE)."""
    from lifting.masks import encode_mask
    from lifting.records import ImageRecord, Object2D

    depth, K, inst = upsample_scene(scene, size)
    W2, H2 = size
    objs = []
    for ob in scene.objects:
        m = inst == ob.instance_id
        if not m.any():
            continue
        r = np.flatnonzero(m.any(axis=1))
        c = np.flatnonzero(m.any(axis=0))
        objs.append(Object2D(object_id=f"{key}-{ob.instance_id}", category=ob.category,
                             bbox_xyxy=[float(c[0]), float(r[0]), float(c[-1] + 1), float(r[-1] + 1)],
                             segmentation=encode_mask(m)))
    rec = ImageRecord(key=key, source="synthetic", image_id=key, image_path="", width=W2, height=H2,
                      K=K.tolist(), gravity_cam=[float(v) for v in scene.gravity_cam], objects=objs)
    return rec, depth, K


def curve_objects(quick: bool) -> dict:
    from lifting.lift import lift_image
    from lifting.qa import QAConfig, generate_qa
    from lifting.qa.templates import get_bank
    from test_qa_scenes import random_record

    sc = big_scene()
    rec = scene_record(sc, "curve_objects")
    ks = sorted({k for k in (1, 2, 5, 10, 20, 35) if k < len(rec.objects)} | {len(rec.objects)})
    lift_image(rec, sc.depth_noisy, sc.K, K_source="dataset", depth_source="sensor")  # warm-up
    lift_t = []
    for k in ks:
        sub = type(rec)(**{**rec.__dict__, "objects": rec.objects[:k]})
        lift_t.append(best_cpu(lambda: lift_image(sub, sc.depth_noisy, sc.K, K_source="dataset",
                                                  depth_source="sensor"), 1 if quick else 2))
    # marginal cost per object: slope of a straight line through (k, t)
    slope, intercept = np.polyfit(ks, lift_t, 1)
    get_bank()
    cfg = QAConfig()
    qa_ks = [1, 2, 5, 10, 20, 35, 50]
    qa_t = []
    n_rec = 40 if quick else 150
    for k in qa_ks:
        recs = [random_record(1000 * k + s, k, 1) for s in range(n_rec)]
        qa_t.append(best_cpu(lambda: [generate_qa(r, cfg) for r in recs], 2) / n_rec)
    return {
        "objects_in_scene": len(rec.objects),
        "lift": {"objects": ks, "s_per_image": lift_t, "loglog_exponent": loglog_exponent(ks, lift_t),
                 "linear_fit_s_per_object": float(slope), "linear_fit_s_fixed_per_image": float(intercept),
                 "ratio_per_object_k_max_vs_k_min": (lift_t[-1] / ks[-1]) / (lift_t[0] / ks[0])},
        "qa": {"objects": qa_ks, "s_per_image": qa_t, "loglog_exponent": loglog_exponent(qa_ks, qa_t),
               "ratio_time_k50_vs_k7_interp": float(qa_t[-1] / np.interp(7, qa_ks, qa_t))},
    }


def curve_size(quick: bool) -> dict:
    from lifting.lift import lift_image
    from bench_lift_core import make_scenes

    sc, _ = make_scenes(1, seed=3)[0]
    sizes = SIZES[:3] if quick else SIZES
    mp, t, nobj = [], [], []
    for size in sizes:
        rec, depth, K = sized_record(sc, size, f"size_{size[0]}")
        mp.append(size[0] * size[1] / 1e6)
        nobj.append(len(rec.objects))
        t.append(best_cpu(lambda: lift_image(rec, depth, K, K_source="dataset", depth_source="sensor"), 3))
    return {"megapixels": mp, "objects": nobj, "s_per_image": t, "loglog_exponent": loglog_exponent(mp, t),
            "ratio_time_per_mp_largest_vs_smallest": (t[-1] / mp[-1]) / (t[0] / mp[0])}


def curve_points(quick: bool) -> dict:
    from lifting.lift import LiftConfig, lift_image
    from bench_lift_core import make_scenes

    sc, _ = make_scenes(1, seed=4)[0]
    rec, depth, K = sized_record(sc, (2304, 1728), "points")  # 4 MP: objects have 10^4..10^5 pixels
    caps = [250, 500, 1000, 2000, 4000, 8000] + ([] if quick else [16000])
    t, npts = [], []
    for cap in caps:
        cfg = LiftConfig(max_points=cap)
        out = lift_image(rec, depth, K, K_source="dataset", depth_source="sensor", config=cfg)
        npts.append(float(np.mean([o["quality"].get("n_points", 0) for o in out["objects"]])))
        t.append(best_cpu(lambda: lift_image(rec, depth, K, K_source="dataset", depth_source="sensor", config=cfg),
                          1) / len(rec.objects))
    # the per-object time has a part that does not depend on the cap (pixel cleaning of the
    # full mask); the exponent of the cap-dependent part is taken against the smallest cap
    extra = [max(x - t[0], 1e-6) for x in t[1:]]
    return {"max_points": caps, "mean_points_after_cleaning": npts, "s_per_object": t,
            "loglog_exponent": loglog_exponent(caps, t),
            "loglog_exponent_cap_dependent_part": loglog_exponent(caps[1:], extra),
            "objects": len(rec.objects)}


_RSS_CHILD = r"""
import os, sys, json, resource
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import numpy as np
from lifting.lift import lift_image
from lifting.sources.image_io import read_image
import bench_curves
def hwm_kb():
    # VmHWM belongs to this exec's address space (ru_maxrss would carry the parent's peak over)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
base = hwm_kb()
size = tuple({size!r})
if size[0]:
    from bench_lift_core import make_scenes
    sc, _ = make_scenes(1, seed=3)[0]
    rec, depth, K = bench_curves.sized_record(sc, size, "rss")
    del sc
    img = read_image({jpg!r}, max_pixels=None)
    out = lift_image(rec, depth, K, K_source="dataset", depth_source="sensor")
print(json.dumps({{"imports_kb": base, "peak_kb": hwm_kb()}}))
"""


def curve_rss(quick: bool) -> dict:
    from PIL import Image

    sizes = SIZES[:3] if quick else SIZES
    out = {"megapixels": [], "peak_rss_mb": [], "imports_only_rss_mb": None}
    with tempfile.TemporaryDirectory() as tmp:
        for size in [(0, 0)] + sizes:
            jpg = str(Path(tmp) / f"{size[0]}.jpg")
            if size[0]:
                rng = np.random.default_rng(0)
                small = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
                Image.fromarray(small).resize(size).save(jpg, quality=90)
            code = _RSS_CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"), size=list(size), jpg=jpg)
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                out.setdefault("errors", []).append(f"{size}: {res.stderr[-300:]}")
                continue
            d = json.loads(res.stdout.strip().splitlines()[-1])
            if not size[0]:
                out["imports_only_rss_mb"] = d["peak_kb"] / 1024
            else:
                out["megapixels"].append(size[0] * size[1] / 1e6)
                out["peak_rss_mb"].append(d["peak_kb"] / 1024)
    if len(out["megapixels"]) >= 2:
        extra = [max(r - (out["imports_only_rss_mb"] or 0), 1.0) for r in out["peak_rss_mb"]]
        out["loglog_exponent_above_imports"] = loglog_exponent(out["megapixels"], extra)
        out["peak_rss_mb_at_largest"] = out["peak_rss_mb"][-1]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer points per curve (smoke run)")
    args = ap.parse_args()
    pin_one_core()
    t0 = time.time()
    result = {"machine": {"cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}}
    for name, fn in (("objects", curve_objects), ("size", curve_size), ("points", curve_points), ("rss", curve_rss)):
        t = time.time()
        result[name] = fn(args.quick)
        result[name]["bench_wall_s"] = round(time.time() - t, 1)
        print(name, json.dumps(result[name])[:400], flush=True)
    rss = result["rss"].get("peak_rss_mb_at_largest")
    result["targets"] = {
        "peak_rss_le_1500mb_at_12mp": (rss is not None and rss <= 1500.0
                                       and max(result["rss"]["megapixels"]) >= 11.9) if rss else False,
        "lift_objects_exponent_le_1.1": result["objects"]["lift"]["loglog_exponent"] <= 1.1,
        "qa_objects_exponent_le_1.1": result["objects"]["qa"]["loglog_exponent"] <= 1.1,
        "size_exponent_le_1.1": result["size"]["loglog_exponent"] <= 1.1,
        "points_exponent_le_1.1": result["points"]["loglog_exponent_cap_dependent_part"] <= 1.1,
    }
    result["wall_s"] = round(time.time() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_curves.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["targets"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

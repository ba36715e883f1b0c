"""`lift3d eval` of the lifting core against the SpatialRGPT-style baseline, same inputs.

Issue 3's check on real RGB-D (sensor depth, 2D boxes only, ground truth kept aside) as one
command: both methods run through the real `lift3d lift` (same reader, depth, K, gravity
estimate, masks or boxes), the baseline by swapping the lifting function
(`pipelines.lift_pipeline.run(..., lift_fn=...)`), and each repository is scored by
`lift3d eval --gt` on the same ground truth.

The baseline (bench/baseline_spatialrgpt.py: back-projection, Open3D statistical outlier
removal, voxel, DBSCAN largest cluster, axis-aligned box in the gravity frame) lifts the
object's mask -- the annotation's, the segmenter's, or with no mask the whole 2D box -- and
keeps every box it gets (it has no filters); input-level rejections (crowd, box outside the
image, bad mask) stay as the core made them so both runs count the same objects.

    .venv/bin/python bench/bench_eval_baseline.py                      # synthetic, noisy, boxes only
    .venv/bin/python bench/bench_eval_baseline.py --masks              # synthetic, with masks
    .venv/bin/python bench/bench_eval_baseline.py --source omni3d --annotations F --images DIR \\
        --gt F_WITH_3D_BOXES [--depth-model sensor] [--boxes-only]

Without --annotations it renders `--scenes` synthetic scenes (`lift3d synth --noise
realistic`) into a temporary folder. Writes bench/results/bench_eval_baseline.json.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"

#: Rejections decided before any 3D work: the baseline inherits them (same objects counted).
INPUT_REASONS = {"crowd", "bbox_outside_image", "mask_invalid", "mask_empty"}


def baseline_lift_image(record, depth, K, *, K_source, depth_source, masks=None, config=None, **kw):
    """`lifting.lift.lift_image`'s signature and record, with every box from the baseline.

    The core's record supplies the image fields and the gravity (dataset or floor plane,
    which the baseline also needs for its gravity-frame box); each object's box, status
    and quality are then replaced by the baseline's.
    """
    import numpy as np
    from baseline_spatialrgpt import backproject_mask, lift_points

    from lifting.lift import lift_image
    from lifting.masks import decode_segmentation

    out = lift_image(record, depth, K, K_source=K_source, depth_source=depth_source, masks=masks, config=config,
                     **kw)
    depth = np.asarray(depth, dtype=np.float32)
    H, W = depth.shape
    K = np.asarray(K, dtype=np.float64)
    g = out["gravity_cam"]
    by_id = {o.object_id: o for o in record.objects}
    stats: Counter = Counter()
    for e in out["objects"]:
        if e["status"] == "rejected" and e["reason"] in INPUT_REASONS:
            stats[e["reason"]] += 1
            continue
        o = by_id[e["object_id"]]
        if masks and o.object_id in masks:
            m = np.asarray(masks[o.object_id], dtype=bool)
        elif o.segmentation is not None:
            m = decode_segmentation(o.segmentation, H, W)
        else:  # box only: the baseline has no segmentation of its own, it takes the box
            m = np.zeros((H, W), dtype=bool)
            x0, y0, x1, y1 = (int(round(v)) for v in o.bbox_xyxy)
            m[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
        xyz = backproject_mask(m, depth, K)
        box = lift_points(xyz, g)
        e["quality"] = {"n_points": int(len(xyz))}
        if box is None:
            e.update(status="rejected", reason="too_few_points", box3d=None)
        else:
            e.update(status="kept", reason=None, box3d=box.to_omni3d())
        stats[e["reason"] or "kept"] += 1
    out["stats"] = dict(sorted(stats.items()))
    kept = stats.get("kept", 0)
    out["status"] = "lifted" if kept else "rejected"
    out["reason"] = None if kept else ("no_objects" if not record.objects else "no_object_kept")
    return out


def lift(argv: list[str], lift_fn=None) -> float:
    """Run `lift3d lift` in process (optionally with another lifting function); CPU seconds."""
    from pipelines.lift_pipeline import run

    t = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        run(argv, lift_fn=lift_fn)
    return time.process_time() - t


def evaluate(repo: Path, gt: Path, *flags: str) -> dict:
    """`lift3d eval --repository repo --gt gt` as the one JSON object it prints."""
    from pipelines.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["eval", "--repository", str(repo), "--gt", str(gt), *flags])
    if rc != 0:
        raise SystemExit(f"lift3d eval failed on {repo} (exit {rc})")
    return json.loads(buf.getvalue().strip().splitlines()[-1])


KEYS = ("gt_objects", "matched", "mean_iou3d", "mean_iou3d_matched", "median_center_err_m")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="omni3d")
    ap.add_argument("--annotations", help="dataset annotations (default: render synthetic scenes)")
    ap.add_argument("--images", help="images folder of --annotations")
    ap.add_argument("--gt", help="file with the 3D ground truth for `lift3d eval --gt` (default: --annotations)")
    ap.add_argument("--depth-model", default="sensor")
    ap.add_argument("--scenes", type=int, default=16, help="synthetic scenes when no --annotations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--masks", action="store_true", help="synthetic: keep the annotation masks (default: boxes only)")
    ap.add_argument("--boxes-only", action="store_true", help="real data: drop the dataset's masks (`--segmenter none`)")
    args = ap.parse_args()
    from pipelines.cli import main as cli

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.annotations:
            ann, images = Path(args.annotations), Path(args.images)
            boxes_only = args.boxes_only
            data = {"annotations": str(ann), "images": str(images)}
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                rc = cli(["synth", "--out", str(tmp / "data"), "--scenes", str(args.scenes), "--seed", str(args.seed),
                          "--noise", "realistic"])
            if rc != 0:
                raise SystemExit("lift3d synth failed")
            ann, images = tmp / "data" / "annotations.json", tmp / "data" / "images"
            boxes_only = not args.masks
            data = {"synthetic_scenes": args.scenes, "seed": args.seed, "noise": "realistic"}
        gt = Path(args.gt) if args.gt else ann
        base = ["--source", args.source, "--annotations", str(ann), "--images", str(images),
                "--depth-model", args.depth_model, "--workers", "1", "--no-progress"]
        if boxes_only:
            base += ["--segmenter", "none"]
        cpu_ours = lift(base + ["--out", str(tmp / "ours")])
        cpu_base = lift(base + ["--out", str(tmp / "baseline")], lift_fn=baseline_lift_image)
        result = {"data": data, "boxes_only": boxes_only, "machine": {"cpu_count": os.cpu_count(),
                                                                      "load_avg_1m": os.getloadavg()[0]}}
        for flt in ("all", "omni3d"):
            ours = evaluate(tmp / "ours", gt, "--gt-filter", flt)
            baseline = evaluate(tmp / "baseline", gt, "--gt-filter", flt)
            result[f"gt_filter_{flt}"] = {"ours": {k: ours.get(k) for k in KEYS},
                                          "baseline": {k: baseline.get(k) for k in KEYS}}
        result["lift_cpu_s"] = {"ours": round(cpu_ours, 2), "baseline (core's record + baseline boxes)":
                                round(cpu_base, 2)}
    a = result["gt_filter_all"]
    result["ours_better_mean_iou3d"] = (a["ours"]["mean_iou3d"] or 0) > (a["baseline"]["mean_iou3d"] or 0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_eval_baseline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the lifter loses 3D IoU, per set and per object: the tuning loop of issue 15.

`bench_real.py` reports the figures through the real `lift3d lift` / `eval` run. This script
lifts the same sets in process (`lift_image` + `Evaluator`, a few seconds for all of them)
with any `LiftConfig` override, so that a change can be measured on every kind of scene at
once -- the real frames of ../shared/data/real3d and their synthetic look-alikes, which are
larger (16 scenes each by default, rendered once into a cache folder) and have exact GT.

For each set it prints the mean 3D IoU over all GT objects (rejected = 0) and what the IoU
would be with one error source replaced by the GT's ("oracle" columns):

- centre only wrong: the predicted centre with the GT size and yaw;
- size+yaw only wrong: the GT centre with the predicted size and yaw;
- range fixed: the predicted box slid along its ray to the GT distance.

`--objects` lists every object (category, GT distance, relative range error, IoU, how the
box was made: `box_from:depth_from`, number of points). Examples:

    .venv/bin/python bench/diagnose_lift.py                       # every set
    .venv/bin/python bench/diagnose_lift.py nuscenes_lidar synthetic_street_far_lidar32
    .venv/bin/python bench/diagnose_lift.py kitti_stereo --objects
    .venv/bin/python bench/diagnose_lift.py --config '{"claim_returns": false}'

Frames that are not present are skipped with a line saying so. Nothing is written except
the synthetic cache (--cache, default a folder under the system's temp directory).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

#: synthetic look-alikes: name -> (`lift3d synth` scene, noise, dataset gravity given)
SYNTHETIC = {
    "synthetic_indoor_kinect": ("indoor", "kinect", True),
    "synthetic_outdoor_lidar": ("outdoor", "lidar", False),
    "synthetic_street_far_lidar32": ("street_far", "lidar32", False),
    "synthetic_outdoor_stereo": ("outdoor", "stereo", False),
}


def real_frames(name: str):
    """((record, depth), ...) of a real set of bench_real.REAL_SETS, or None when absent."""
    import bench_real as B

    kind, source, rel, extra = B.REAL_SETS[name]
    ann = B.REAL3D / rel
    if not ann.exists():
        return None
    return B.frames(source, str(ann), tuple(extra))


def synthetic_frames(name: str, scenes: int, cache: Path):
    """((record, depth), ...) of a synthetic look-alike, rendered into `cache` once."""
    from lifting.sources import open_source
    from lifting.sources.depth_io import read_record_depth
    from pipelines.commands.synth import synth

    scene, noise, gravity = SYNTHETIC[name]
    d = cache / f"{name}_{scenes}"
    if not (d / "annotations.json").exists():
        synth(str(d), scenes, 0, noise, scene, gravity=gravity)
    recs = [r for r in open_source("omni3d", annotations=str(d / "annotations.json"),
                                   images=str(d / "images")).iter_records() if hasattr(r, "objects")]
    return tuple((r, read_record_depth(r.to_dict())) for r in recs)


def diagnose(frames, config, objects: bool = False) -> dict:
    """Lift `frames` box-only and score them; returns the summary with the oracle columns
    (and prints one line per object when `objects`)."""
    from bench_real import boxes_only
    from lifting.boxes import Box3D
    from lifting.evaluate import Evaluator, gt_from_records, record_box
    from lifting.iou3d import iou_3d
    from lifting.lift import lift_image
    from pipelines.transforms import sensor_depth_source

    gt = gt_from_records(r for r, _ in frames)
    ev = Evaluator(gt)
    rows = []
    for r, depth in frames:
        out = lift_image(boxes_only(r), np.asarray(depth, dtype=np.float32), np.asarray(r.K, dtype=np.float64),
                         K_source="dataset", depth_source=sensor_depth_source(r.to_dict()), config=config)
        ev.add(out)
        by_id = {o["object_id"]: o for o in out["objects"]}
        for res in ev.results[-len(r.objects):]:
            g = next(x for x in gt.images[res.image_id].objects if x.ann_id == res.ann_id).box
            o = by_id.get(res.pred_object_id) or {}
            p = record_box(o) if o.get("box3d") and res.status == "matched" else None
            if p is None:
                rows.append((0.0, 0.0, 0.0, 0.0))
                iou, dz = 0.0, float("nan")
            else:
                iou = iou_3d(p, g)
                along = np.linalg.norm(g.center_cam) / np.linalg.norm(p.center_cam)
                rows.append((iou, iou_3d(Box3D(p.center_cam, g.dimensions, g.R_cam, g.yaw), g),
                             iou_3d(Box3D(g.center_cam, p.dimensions, p.R_cam, p.yaw), g),
                             iou_3d(Box3D(p.center_cam * along, p.dimensions, p.R_cam, p.yaw), g)))
                dz = 1.0 / along - 1.0
            if objects:
                q = o.get("quality") or {}
                how = f"{q.get('box_from') or 'fit'}:{q.get('depth_from') or 'points'}"
                status = res.status if res.status != "matched" else ""
                print(f"  {res.category[:14]:14s} z {g.center_cam[2]:5.1f} m  range {dz:+.3f}  iou {iou:.2f}  "
                      f"{how:24s} n={q.get('n_points')} {status} {o.get('reason') or ''}".rstrip())
    s = ev.summary()
    a = np.array(rows) if rows else np.zeros((0, 4))
    s["oracle"] = {k: round(float(a[:, i].mean()), 3) if len(a) else None
                   for i, k in enumerate(("iou", "centre_only_wrong", "size_yaw_only_wrong", "range_fixed"))}
    return s


def main(argv=None) -> int:
    import bench_real as B

    names = list(B.REAL_SETS) + list(SYNTHETIC)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", metavar="SET", help=f"sets to lift (default: all): {', '.join(names)}")
    ap.add_argument("--config", default="{}", help="LiftConfig overrides as a JSON object")
    ap.add_argument("--objects", action="store_true", help="one line per object")
    ap.add_argument("--scenes", type=int, default=16, help="synthetic scenes per look-alike (default 16)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "lift3d_diagnose"),
                    help="folder for the rendered synthetic scenes (reused)")
    args = ap.parse_args(argv)
    from lifting.lift.config import LiftConfig

    unknown = [n for n in args.sets if n not in names]
    if unknown:
        print(f"diagnose_lift: unknown set(s) {', '.join(unknown)}; choose from {', '.join(names)}", file=sys.stderr)
        return 2
    try:
        config = LiftConfig.from_dict(json.loads(args.config))
    except (ValueError, TypeError) as e:
        print(f"diagnose_lift: --config: {e}", file=sys.stderr)
        return 2
    print("| set | GT | mean 3D IoU | centre only wrong | size+yaw only wrong | range fixed | median centre error m |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets or names:
        frames = (real_frames(name) if name in B.REAL_SETS
                  else synthetic_frames(name, args.scenes, Path(args.cache)))
        if frames is None:
            print(f"| {name} | – | not found under {B.REAL3D} | | | | |")
            continue
        if args.objects:
            print(f"{name}:")
        s = diagnose(frames, config, args.objects)
        o = s["oracle"]
        cen = s.get("median_center_err_m")
        print(f"| {name} | {s['gt_objects']} | {o['iou']} | {o['centre_only_wrong']} | {o['size_yaw_only_wrong']} | "
              f"{o['range_fixed']} | {'–' if cen is None else round(cen, 2)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

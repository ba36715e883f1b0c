"""Throughput of `lift3d eval` / `stats` / `viz` on a synthetic repository.

Writes bench/results/eval_viz.json. Every figure is also given as a ratio to the cost of
merely reading the repository (tar + JSON parse of every record), measured in the same
run: that is the floor any pass over the data pays, so the ratio says what the analysis
adds on top of I/O.

Run: .venv/bin/python bench/eval_viz.py [--images 2000]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lifting.boxes import Box3D  # noqa: E402
from lifting.evaluate import Evaluator, SelfConsistency, parse_gt  # noqa: E402
from lifting.viz.card import DatasetStats  # noqa: E402
from lifting.viz.panel import render_panel  # noqa: E402
from lifting.viz.reader import iter_records  # noqa: E402
from test_viz_fixtures import K, H, W, kept_object, make_record, write_output  # noqa: E402


def build(tmp: Path, n_images: int, objs_per_image: int = 6, seed: int = 0):
    """A repository of n_images records (GT boxes jittered) and the matching GT dict."""
    rng = np.random.default_rng(seed)
    records, images, anns = [], [], []
    aid = 1
    for i in range(n_images):
        objs = []
        for k in range(objs_per_image):
            z = rng.uniform(2.0, 8.0)
            c = [rng.uniform(-0.3, 0.3) * z, rng.uniform(0.0, 0.1) * z, z]  # in view
            d = rng.uniform(0.3, 1.5, 3)
            yaw = rng.uniform(-np.pi, np.pi)
            gt = Box3D.from_gravity(c, d, yaw)
            pred = Box3D.from_gravity(np.add(c, rng.normal(0, 0.1, 3)), d * rng.uniform(0.85, 1.15, 3),
                                      yaw + rng.normal(0, 0.1))
            o = gt.to_omni3d()
            anns.append({"id": aid, "image_id": i, "category_id": 1, "bbox": [0, 0, 1, 1], **o})
            objs.append(kept_object(f"b{i}-{k}", "thing", pred, aid, K, (W, H)))
            aid += 1
        records.append(make_record(f"bench_{i}", objs, i, file_name=f"{i}.jpg"))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": W, "height": H, "K": K.tolist()})
    write_output(tmp, records, jpgs=False)
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        gt_doc = build(tmp, args.images)
        repo = tmp / "repository"
        n_obj = sum(len(r["objects"]) for r, _ in iter_records(repo))

        def read_only():
            for _ in iter_records(repo):
                pass

        def self_consistency():
            sc = SelfConsistency()
            for r, _ in iter_records(repo):
                sc.add(r)
            sc.summary()

        def gt_eval():
            ev = Evaluator(parse_gt(gt_doc), match="ann_id")
            for r, _ in iter_records(repo):
                ev.add(r)
            return ev.summary()

        def gt_eval_hungarian():
            ev = Evaluator(parse_gt(gt_doc), match="proj_iou")
            for r, _ in iter_records(repo):
                ev.add(r)
            return ev.summary()

        def stats():
            st = DatasetStats()
            for r, _ in iter_records(repo):
                st.add_record(r)
            st.summary()

        t_read = timed(read_only)
        res = {"read_only": t_read, "self_consistency": timed(self_consistency), "eval_gt_ann_id": timed(gt_eval),
               "eval_gt_hungarian": timed(gt_eval_hungarian), "stats_accumulate": timed(stats)}
        rec = next(iter_records(repo))[0]
        t_panel = timed(lambda: render_panel(rec, None, [], max_height=540), repeat=5)
        report = gt_eval()
    out = {
        "images": args.images, "objects": n_obj, "machine": platform.platform(), "python": platform.python_version(),
        "seconds": {k: round(v, 4) for k, v in res.items()},
        "images_per_s": {k: round(args.images / v, 1) for k, v in res.items()},
        "ratio_to_read_only": {k: round(v / t_read, 2) for k, v in res.items()},
        "panel_render_ms_per_image": round(1000 * t_panel, 1),
        "sanity_mean_iou3d_of_jittered_boxes": round(report["mean_iou3d"], 3),
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "eval_viz.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""QA truth against ground truth: how many generated answers hold for the real scene.

Every frame of ../shared/data/real3d with depth (issue 15's real dev set) and synthetic
scenes (the realistic indoor / outdoor generators and the basic regression scenes) are
lifted in process with 2D boxes only and the dataset's depth (`lift_image`, what `lift3d
lift --segmenter none` runs), QA is generated from the lifted records (`generate_qa`, as
`lift3d qa`: several seeds per image), and every answer is recomputed from the GT boxes of
the same objects (`lifting.qa_truth.evaluate_qa`, what `lift3d eval --qa` runs):

- binary truth (yes/no, choice), numeric answers within 10 % / 25 %, clock hours exact,
  exact answers (orders, extremes, counts), ambiguous-under-GT, questions per image (all
  images, and images with >= 3 kept objects), by set and pooled per kind of depth;
- the trade-off curve of the uncertainty-aware margins (QAConfig.margins.uncertainty_k:
  0 = off ... 2): truth rate against questions kept per image;
- the calibration of the stated uncertainties (lifting/lift/uncertainty.py): the share of
  objects whose centre / height / footprint error is within the stated 1-sigma (~68 %
  expected).

    .venv/bin/python bench/bench_qa_truth.py [--seeds N] [--scenes N]

Writes bench/results/bench_qa_truth.json and prints the tables as Markdown. Frames not
present (../shared/data/real3d absent) are skipped with a line saying so.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"

KS = (0.0, 0.5, 1.0, 1.5, 2.0)


def lifted_sets(tmp: Path, scenes: int) -> dict:
    """name -> (kind, [(lifted record, GT image)...], GTSet) for the real and synthetic sets."""
    import numpy as np

    import bench_real as B
    from lifting.evaluate import gt_from_records, load_gt
    from lifting.lift import lift_image
    from lifting.sources import open_source
    from lifting.sources.depth_io import read_record_depth
    from pipelines.transforms import sensor_depth_source

    out = {}
    for name, (kind, source, ann, extra) in B.REAL_SETS.items():
        path = B.REAL3D / ann
        if not path.exists():
            print(f"[bench_qa_truth] {path} not found: {name} skipped", file=sys.stderr)
            continue
        data = B.frames(source, str(path), tuple(extra))
        gt = gt_from_records(r for r, _ in data)
        recs = [lift_image(B.boxes_only(r), d.astype(np.float32), np.asarray(r.K, float), K_source="dataset",
                           depth_source=sensor_depth_source(r.to_dict())) for r, d in data]
        out[name] = (kind, recs, gt)
    for name, (ann, images) in B.synthetic_sets(tmp, scenes).items():
        gt = load_gt(ann)
        recs = []
        for r in open_source("omni3d", annotations=ann, images=images).iter_records():
            if not hasattr(r, "objects"):
                continue
            d = read_record_depth(r.to_dict())
            recs.append(lift_image(B.boxes_only(r), d.astype(np.float32), np.asarray(r.K, float), K_source="dataset",
                                   depth_source=sensor_depth_source(r.to_dict())))
        out[name] = ("synthetic", recs, gt)
    return out


def truth(recs: list, gt, k: float, seeds: int) -> dict:
    from lifting.qa import QAConfig, generate_qa
    from lifting.qa.config import Margins
    from lifting.qa_truth import evaluate_qa

    samples = []
    for seed in range(seeds):
        cfg = QAConfig(seed=seed, margins=Margins(uncertainty_k=k))
        samples += [s for s in (generate_qa(r, cfg) for r in recs) if s]
    rep = evaluate_qa(samples, {r["key"]: r for r in recs}, gt)
    rich = {r["key"] for r in recs if sum(o["status"] == "kept" for o in r["objects"]) >= 3}
    n_rich = [len(s["questions"]) for s in samples if s["key"] in rich]
    rep["images_3plus"] = len(rich)
    rep["questions_per_image_3plus"] = round(sum(n_rich) / max(len(rich) * seeds, 1), 2)
    rep["questions_per_image"] = round(rep["questions"] / max(len(recs) * seeds, 1), 2)
    return rep


def coverage(recs: list, gt) -> dict:
    """Share of kept objects whose centre / height / footprint error is within the stated 1-sigma."""
    import numpy as np

    from lifting.boxes import Box3D
    from lifting.evaluate import Evaluator

    ev = Evaluator(gt)
    hits = []
    for rec in recs:
        iid = ev.find_gt_image(rec)
        if iid is None:
            continue
        by_ann = {str(g.ann_id): g for g in gt.images[iid].objects}
        for o in rec["objects"]:
            g = by_ann.get(str(o.get("source_ann_id")))
            u = (o.get("quality") or {}).get("uncertainty")
            if o["status"] != "kept" or g is None or u is None:
                continue
            b = Box3D.from_omni3d(o["box3d"])
            bd, gd = np.asarray(b.dimensions), np.asarray(g.box.dimensions)
            feet = [abs(np.log(x / y)) <= u["footprint_log"]
                    for x, y in zip(sorted([bd[0], bd[2]]), sorted([gd[0], gd[2]]))]
            hits.append((float(np.linalg.norm(b.center_cam - g.box.center_cam)) <= u["center_m"],
                         abs(np.log(bd[1] / gd[1])) <= u["height_log"], float(np.mean(feet))))
    if not hits:
        return {"objects": 0}
    a = np.asarray(hits, float)
    return {"objects": len(hits), "center": round(float(a[:, 0].mean()), 3), "height": round(float(a[:, 1].mean()), 3),
            "footprint": round(float(a[:, 2].mean()), 3)}


COLS = ("questions", "questions_per_image", "questions_per_image_3plus", "binary_truth_rate", "numeric_within_10pct",
        "numeric_within_25pct", "clock_exact", "exact_truth_rate", "ambiguous", "false")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="QA seeds per image (questions drawn per seed)")
    ap.add_argument("--scenes", type=int, default=6, help="synthetic scenes per generator")
    args = ap.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        sets = lifted_sets(Path(tmp), args.scenes)
        by_kind: dict[str, list] = {}
        for name, (kind, recs, gt) in sets.items():
            by_kind.setdefault(kind, []).append(name)
        by_kind["real, pooled"] = [n for n, (kind, _, _) in sets.items() if kind != "synthetic"]
        res = {"sets": {}, "kinds": {}, "curve": {}, "coverage": {}}
        for name, (kind, recs, gt) in sets.items():
            res["sets"][name] = {"kind": kind, **{c: truth(recs, gt, 1.0, args.seeds).get(c) for c in COLS}}
            res["coverage"][name] = coverage(recs, gt)
            print(f"[bench_qa_truth] {name}: {res['sets'][name]}", file=sys.stderr)
        for kind, names in by_kind.items():
            for k in KS:
                # pooled over the kind's sets: samples and records of every set together
                agg = None
                for n in names:
                    r = truth(sets[n][1], sets[n][2], k, args.seeds)
                    agg = _pool(agg, r)
                row = {c: agg.get(c) for c in COLS}
                res["curve"].setdefault(kind, {})[str(k)] = row
                if k == 1.0:
                    res["kinds"][kind] = row
    res["wall_s"] = round(time.monotonic() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_qa_truth.json").write_text(json.dumps(res, indent=2) + "\n")
    print(_table("QA truth by kind (uncertainty_k = 1, the default)", res["kinds"]))
    print(_table("QA truth by set", res["sets"]))
    for kind, curve in res["curve"].items():
        print(_table(f"trade-off: {kind}, by uncertainty_k", curve))
    print("\n## Stated 1-sigma coverage (share within; ~0.68 expected)\n")
    for n, c in res["coverage"].items():
        print(f"- {n}: {c}")
    return 0


def _pool(agg: dict | None, r: dict) -> dict:
    """Pool two truth reports (question-weighted rates, summed counts)."""
    if agg is None:
        agg = {"_n": {}}
    out = {k: v for k, v in agg.items()}
    n = dict(agg["_n"])
    for key, (num, den) in _counts(r).items():
        a, b = n.get(key, (0, 0))
        n[key] = (a + num, b + den)
    out["_n"] = n
    for key, (num, den) in n.items():
        out[key] = (int(num) if key in COUNTS else round(num / den, 4)) if den else None
    return out


COUNTS = ("questions", "ambiguous", "false")


def _counts(r: dict) -> dict:
    """rate name -> (numerator, denominator) of a truth report, for pooling."""
    def pair(rate, den):
        return ((r.get(rate) or 0.0) * (r.get(den) or 0), r.get(den) or 0)
    return {"binary_truth_rate": pair("binary_truth_rate", "binary_scored"),
            "numeric_within_10pct": pair("numeric_within_10pct", "numeric_scored"),
            "numeric_within_25pct": pair("numeric_within_25pct", "numeric_scored"),
            "clock_exact": pair("clock_exact", "clock_scored"),
            "exact_truth_rate": pair("exact_truth_rate", "exact_scored"),
            "questions": (r["questions"], 1), "ambiguous": (r["ambiguous"], 1), "false": (r["false"], 1),
            "questions_per_image": (r["questions_per_image"] * r["images"], r["images"]),
            "questions_per_image_3plus": (r["questions_per_image_3plus"] * r["images_3plus"], r["images_3plus"])}


def _table(title: str, rows: dict) -> str:
    lines = [f"\n## {title}\n", "| | " + " | ".join(COLS) + " |", "|" + "---|" * (len(COLS) + 1)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join("–" if row.get(c) is None else str(row.get(c)) for c in COLS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

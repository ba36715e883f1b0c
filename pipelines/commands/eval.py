"""`lift3d eval`: score a 3D repository against Omni3D-style GT, or report its self-consistency.

Prints exactly one JSON object on stdout (logs go to stderr); `--out F` also writes it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

HELP = "score a 3D repository against Omni3D-style ground truth (or its self-consistency); prints one JSON object"
DESCRIPTION = (
    "With --gt: match lifted objects to GT objects (by source annotation id when the repository was lifted "
    "from the same file, else by Hungarian matching on projected 2D IoU) and report 3D IoU, recall at "
    "IoU 0.25/0.5, centre, size, depth and yaw errors and projected IoU, overall and per category. "
    "Without --gt: projected IoU against the source 2D boxes, depth-vs-box agreement (when depth maps "
    "were stored) and rejection reasons."
)

log = logging.getLogger("lift3d.eval")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", required=True, help="lift output folder (OUT or OUT/repository); a URL "
                   "(s3://, gs://, ...) is read through a local mirror in $LIFT3D_CACHE_DIR (~/.cache/lift3d)")
    p.add_argument("--gt", help="Omni3D-style COCO JSON with K per image and center_cam/dimensions/R_cam per annotation; "
                   "with --gt-source, the real dataset's --annotations (KITTI split folder, SUN RGB-D frame folder or "
                   "info .pkl, nuScenes info .pkl)")
    p.add_argument("--gt-source", choices=["omni3d", "kitti", "sunrgbd", "nuscenes"], default="omni3d",
                   help="format of --gt: an Omni3D-style JSON file (default) or a real 3D dataset in its native layout, "
                   "read by the same reader as `lift3d lift --source`")
    p.add_argument("--gt-images", help="with --gt-source kitti/sunrgbd/nuscenes: the images folder, when not the "
                   "dataset's default")
    p.add_argument("--out", help="also write the JSON report to this file")
    p.add_argument("--match", choices=["auto", "ann_id", "proj_iou"], default="auto",
                   help="object matching: by source annotation id, by Hungarian projected IoU, or auto per image")
    p.add_argument("--min-match-iou", type=float, default=0.1, help="least projected IoU of a proj_iou match")
    p.add_argument("--same-category", action="store_true", help="proj_iou matching only pairs equal category names")
    p.add_argument("--images", choices=["all", "present"], default="all",
                   help="score all GT images (absent ones count 0) or only those present in the repository")
    p.add_argument("--gt-filter", choices=["all", "omni3d"], default="all",
                   help="GT population: every annotation with a 3D box, or Omni3D's own filter (visibility >= 1/3, "
                   "truncation <= 1/3, where the annotations carry those fields; the rest are counted in gt_skipped)")
    p.add_argument("--per-object", help="write one JSON line per GT object (status, figures) to this file")
    p.add_argument("--no-depth", action="store_true", help="self-consistency: skip reading stored depth maps")
    p.add_argument("--qa", help="with --gt: also measure how true the QA output in this folder (OUT or OUT/qa, made "
                   "from --repository) is of the GT boxes -- every answer recomputed from the GT boxes of the same "
                   "objects (by source annotation id) and the dataset's gravity; reported under \"qa_truth\": "
                   "true / false / ambiguous-under-GT / unmappable per family, form and axis, binary truth rate, "
                   "numeric answers within 10 %% / 25 %%, clock hours exact and within 1 h, examples of false answers")


def _dump(report: dict) -> str:
    return json.dumps(report, sort_keys=False, allow_nan=False, default=_jsonable)


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _run(args: argparse.Namespace) -> int:
    from pipelines.options import repository_paths
    from pipelines.cli import UserError
    from lifting.evaluate import Evaluator, SelfConsistency, load_gt
    from lifting.viz.reader import decode_depth, iter_records

    from pipelines.options import mirrored

    paths = repository_paths(args.repository)
    args.gt, args.gt_images = mirrored(args.gt), mirrored(args.gt_images)
    if args.gt_images and args.gt_source == "omni3d":
        raise UserError("--gt-images applies to --gt-source kitti, sunrgbd or nuscenes")
    if args.gt:
        if not Path(args.gt).exists() or (args.gt_source == "omni3d" and not Path(args.gt).is_file()):
            raise UserError(f"GT file not found: {args.gt}")
        try:
            if args.gt_source == "omni3d":
                gt = load_gt(args.gt, args.gt_filter)
            else:
                from lifting.evaluate import gt_from_records
                from lifting.sources import SourceConfigError, open_source

                try:
                    src = open_source(args.gt_source, annotations=args.gt, images=args.gt_images)
                    gt = gt_from_records(src.iter_records(), args.gt_filter)
                except SourceConfigError as e:
                    raise UserError(str(e)) from e
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"cannot parse GT file {args.gt}: {e}") from e
        log.info("GT: %d images, %d scorable objects, skipped %s", len(gt.images), gt.n_objects, dict(gt.skipped))
        ev = Evaluator(gt, match=args.match, min_match_iou=args.min_match_iou, same_category=args.same_category,
                       images=args.images)
        for rec, _ in iter_records(paths.repo_dir):
            ev.add(rec)
        report = ev.summary()
        if args.qa:
            report["qa_truth"] = _qa_truth(args.qa, paths.repo_dir, ev)
        if args.per_object:
            with open(args.per_object, "w", encoding="utf-8") as f:
                for r in ev.results:
                    f.write(json.dumps({"image_id": r.image_id, "ann_id": r.ann_id, "category": r.category,
                                        "status": r.status, "reason": r.reason, "pred_object_id": r.pred_object_id,
                                        **(r.figures or {})}, default=_jsonable) + "\n")
    else:
        if args.qa:
            raise UserError("--qa needs --gt: answers are checked against the GT boxes")
        sc = SelfConsistency()
        for rec, files in iter_records(paths.repo_dir, with_depth=not args.no_depth):
            depth = decode_depth(files["depth.png"], rec) if files.get("depth.png") else None
            sc.add(rec, depth)
        report = sc.summary()
    report["repository"] = str(paths.repo_dir)
    text = _dump(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return 0


def _qa_truth(qa: str, repo_dir: Path, ev) -> dict:
    """lifting.qa_truth report of the QA shards in `qa` against the evaluator's GT."""
    from pipelines.cli import UserError
    from lifting.qa_truth import evaluate_qa
    from lifting.viz.reader import iter_qa, iter_records

    root = Path(qa)
    if not root.is_dir():
        raise UserError(f"--qa folder not found: {qa}")
    if not any(root.glob("shard-*.tar")) and any((root / "qa").glob("shard-*.tar")):
        root = root / "qa"
    if not any(root.glob("shard-*.tar")):
        raise UserError(f"no QA shard-NNNNNN.tar in {qa}")
    records = {rec["key"]: rec for rec, _ in iter_records(repo_dir)}
    return evaluate_qa(iter_qa(root), records, ev.gt)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines.options import repository_errors

    with repository_errors():
        return _run(args)

"""Score a 3D repository against Omni3D-style ground truth, or against itself.

Two entry points, both streaming (one image record at a time, so a million-image
repository needs memory only for the per-object figures):

- `Evaluator(gt)`: matches the lifted objects of each image to the GT objects of the same
  image and accumulates 3D IoU, centre error, size error, depth error, yaw error and the
  projected 2D IoU; `summary()` returns one JSON-ready dict (see `summarise`).
- `SelfConsistency()`: the figures every repository has without GT: projected IoU of each
  kept 3D box against its own source 2D box (the N3D-VLM grounding check), agreement of
  the box with the depth map inside its 2D box (when `KEY.depth.png` was stored), and the
  rejection reasons.

Matching (per image):
- `ann_id`: lifted object <-> GT annotation with the same id (`source_ann_id`), used when
  the repository was lifted from the GT file itself;
- `proj_iou`: Hungarian assignment (scipy `linear_sum_assignment`) maximising the IoU of
  the lifted box's projection (record K, clipped to the image) with the GT box's
  projection (GT K; the file's `bbox2D_proj` without K) -- amodal against amodal, so an
  exact box scores 1 even when the object is occluded; pairs under `min_match_iou` stay
  unmatched. `mean_proj_iou` is that same IoU over matched objects. GT objects left over are then paired with
  *rejected* lifted objects by the IoU of their source 2D boxes, so the report can say
  why they are missing.
- `auto` (default): `ann_id` for an image when each of its objects that carries a
  `source_ann_id` names a GT annotation of that image (and at least one does), else
  `proj_iou`.

Conventions: boxes are in the camera frame (OpenCV, metres, see lifting/boxes.py); 2D
boxes are (x0, y0, x1, y1) in pixel-edge coordinates of the *stored* image; a GT image of
a different size is rescaled to it. JSON has no NaN: empty means are reported as null.
"""
from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy.optimize import linear_sum_assignment

from lifting.boxes import Box3D, iou_2d, project_box, xywh_to_xyxy
from lifting.camera import backproject, crop_K
from lifting.iou3d import iou_3d

log = logging.getLogger(__name__)

MATCH_MODES = ("auto", "ann_id", "proj_iou")


# ---------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------
@dataclass
class GTObject:
    """One GT object; 2D boxes in pixel-edge coordinates of the GT image, `box` metric.

    `bbox_xyxy` is the annotated 2D box (`bbox`, else `bbox2D_tight`): what a lifter was
    given. `proj_xyxy` is the projection of the GT 3D box (computed with the image's K,
    else the file's `bbox2D_proj`): the amodal reference for projected IoU.
    """

    ann_id: int | str
    category: str
    bbox_xyxy: tuple[float, float, float, float] | None
    box: Box3D
    proj_xyxy: tuple[float, float, float, float] | None = None


@dataclass
class GTImage:
    """One GT image: size in pixels, K (3, 3) or None, its 3D-annotated objects and the
    dataset's "down" vector in the camera frame (None when the dataset has none)."""

    image_id: int | str
    file_name: str
    width: int | None
    height: int | None
    K: np.ndarray | None
    objects: list[GTObject] = field(default_factory=list)
    gravity_cam: np.ndarray | None = None


@dataclass
class GTSet:
    """Parsed GT file: images by id, plus the annotations that could not be used (by reason)."""

    images: dict
    skipped: Counter

    @property
    def n_objects(self) -> int:
        return sum(len(im.objects) for im in self.images.values())


def _gt_ann_reason(ann: dict) -> str | None:
    """Reason code why an Omni3D-style annotation is not scorable, or None."""
    if ann.get("valid3D") is False:
        return "gt_invalid3d"
    if ann.get("behind_camera") is True:
        return "gt_behind_camera"
    for k in ("center_cam", "dimensions", "R_cam"):
        if ann.get(k) is None:
            return "gt_no_box3d"
    try:
        c = np.asarray(ann["center_cam"], dtype=np.float64).reshape(3)
        d = np.asarray(ann["dimensions"], dtype=np.float64).reshape(3)
        R = np.asarray(ann["R_cam"], dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        return "gt_bad_box3d"
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(R)) and np.all(np.isfinite(d))):
        return "gt_bad_box3d"
    if np.any(d <= 0):
        return "gt_bad_dimensions"
    return None


def _xyxy(b) -> tuple[float, float, float, float] | None:
    """An Omni3D (x0, y0, x1, y1) list as a tuple; None when absent or not 4 numbers."""
    if b is None or len(b) != 4 or any(v is None for v in b) or all(v == -1 for v in b):
        return None  # Omni3D writes [-1, -1, -1, -1] for "not available"
    return tuple(float(v) for v in b)


#: GT populations: "all" scores every annotation with a 3D box; "omni3d" applies Omni3D's own
#: filter (cubercnn filter settings: visibility >= 1/3, truncation <= 1/3) where the
#: annotations carry those fields, skipping the others as gt_occluded / gt_truncated.
GT_FILTERS = ("all", "omni3d")


def _unit_or_none(v) -> np.ndarray | None:
    """(3,) unit vector from a JSON list, or None when absent or unusable."""
    try:
        g = np.asarray(v, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        return None
    n = float(np.linalg.norm(g))
    return g / n if np.isfinite(n) and n > 1e-9 else None


def parse_gt(coco: dict, gt_filter: str = "all") -> GTSet:
    """Omni3D-style COCO dict (images with K; annotations with bbox [x,y,w,h], center_cam,
    dimensions [w,h,l], R_cam box->camera) -> GTSet. Unusable annotations are counted by
    reason in `skipped`, never raised on. `gt_filter`: see GT_FILTERS."""
    if gt_filter not in GT_FILTERS:
        raise ValueError(f"gt_filter must be one of {GT_FILTERS}, got {gt_filter!r}")
    cats = {c["id"]: c.get("name", str(c["id"])) for c in coco.get("categories", [])}
    images: dict = {}
    for im in coco.get("images", []):
        K = im.get("K")
        try:
            K = None if K is None else np.asarray(K, dtype=np.float64).reshape(3, 3)
        except (TypeError, ValueError):
            K = None
        images[im["id"]] = GTImage(im["id"], str(im.get("file_name", "")), im.get("width"), im.get("height"), K,
                                   gravity_cam=_unit_or_none(im.get("gravity_cam")))
    skipped: Counter = Counter()
    for ann in coco.get("annotations", []):
        im = images.get(ann.get("image_id"))
        if im is None:
            skipped["gt_unknown_image"] += 1
            continue
        if ann.get("ignore") or ann.get("iscrowd"):
            skipped["gt_ignore"] += 1
            continue
        reason = _gt_ann_reason(ann)
        if reason is None and gt_filter == "omni3d":
            if ann.get("visibility") is not None and float(ann["visibility"]) < 1 / 3:
                reason = "gt_occluded"
            elif ann.get("truncation") is not None and float(ann["truncation"]) > 1 / 3:
                reason = "gt_truncated"
        if reason is not None:
            skipped[reason] += 1
            continue
        box = Box3D.from_omni3d(ann)
        bbox = ann.get("bbox")
        bbox = xywh_to_xyxy(bbox) if bbox is not None and len(bbox) == 4 else _xyxy(ann.get("bbox2D_tight"))
        size = (im.width, im.height) if im.width and im.height else None
        proj = project_box(box, im.K, size) if im.K is not None else _xyxy(ann.get("bbox2D_proj"))
        im.objects.append(GTObject(
            ann_id=ann["id"],
            category=str(ann.get("category_name") or cats.get(ann.get("category_id"), ann.get("category_id"))),
            bbox_xyxy=bbox,
            box=box,
            proj_xyxy=proj,
        ))
    return GTSet(images, skipped)


def load_gt(path: str | Path, gt_filter: str = "all") -> GTSet:
    """Read and parse an Omni3D-style GT JSON file (see `parse_gt`)."""
    with open(path, encoding="utf-8") as f:
        return parse_gt(json.load(f), gt_filter)


def gt_from_records(records: Iterable, gt_filter: str = "all") -> GTSet:
    """GTSet from image records whose objects carry `gt_box3d` (the real 3D dataset readers
    of lifting.sources: kitti, sunrgbd, nuscenes; any source that fills it).

    `gt_filter="omni3d"` skips objects whose attributes say truncation > 1/3
    (`truncated`), visibility < 1/3 (`visibility`) or KITTI occlusion level >= 2
    (`occluded`: largely occluded or unknown) as gt_truncated / gt_occluded.
    Objects without a 3D box count as gt_no_box3d; the reader's error records as
    gt_{reason} (e.g. gt_ignored_category for KITTI's DontCare regions).
    """
    if gt_filter not in GT_FILTERS:
        raise ValueError(f"gt_filter must be one of {GT_FILTERS}, got {gt_filter!r}")
    images: dict = {}
    skipped: Counter = Counter()
    for rec in records:
        if not hasattr(rec, "objects"):
            skipped[f"gt_{rec.reason}"] += 1
            continue
        K = None if rec.K is None else np.asarray(rec.K, dtype=np.float64)
        im = GTImage(rec.image_id, _basename(rec.image_path), rec.width, rec.height, K,
                     gravity_cam=_unit_or_none(rec.gravity_cam))
        images[rec.image_id] = im
        size = (rec.width, rec.height) if rec.width and rec.height else None
        for o in rec.objects:
            if o.gt_box3d is None:
                skipped["gt_no_box3d"] += 1
                continue
            a = o.attributes or {}
            if gt_filter == "omni3d":
                if float(a.get("truncated") or 0.0) > 1 / 3:
                    skipped["gt_truncated"] += 1
                    continue
                if (a.get("visibility") is not None and float(a["visibility"]) < 1 / 3) or int(a.get("occluded") or 0) >= 2:
                    skipped["gt_occluded"] += 1
                    continue
            box = Box3D.from_omni3d(o.gt_box3d)
            proj = project_box(box, K, size) if K is not None else None
            im.objects.append(GTObject(ann_id=o.source_ann_id, category=o.category,
                                       bbox_xyxy=tuple(o.bbox_xyxy), box=box, proj_xyxy=proj))
    return GTSet(images, skipped)


def gt_filter_check(records: Iterable, config=None, priors=None) -> dict:
    """How many GT boxes the lifter's own box filters would reject, by reason.

    Each GT box of the records (objects with `gt_box3d`) is judged by exactly the code that
    judges a lifted box (`lifting.lift.core.assess_box`: size, prior, aspect, truncation,
    projected IoU on the observed sides), with the object's hidden sides taken from the
    image border and the 2D boxes of nearer GT objects. Filters calibrated on real data
    pass (almost) every GT box.

    Returns {"gt_objects", "rejected", "rejected_fraction", "by_reason", "examples"}.
    """
    from lifting.lift.config import LiftConfig
    from lifting.lift.core import assess_box, default_priors
    from lifting.lift.frustum import hidden_sides

    cfg = config or LiftConfig()
    priors = priors if priors is not None else default_priors()
    n, reasons, examples = 0, Counter(), []
    for rec in records:
        if not hasattr(rec, "objects"):  # the reader's error records: nothing to judge
            continue
        objs = [o for o in rec.objects if o.gt_box3d is not None]
        boxes = [o.bbox_xyxy for o in objs]
        depths = [float(o.gt_box3d["center_cam"][2]) for o in objs]
        K = np.asarray(rec.K, dtype=np.float64)
        for i, o in enumerate(objs):
            prior, _ = priors.dims(o.category)
            figures, reason = assess_box(Box3D.from_omni3d(o.gt_box3d), o.bbox_xyxy, K, (rec.width, rec.height),
                                         hidden_sides(i, boxes, depths, (rec.width, rec.height)), prior, cfg)
            n += 1
            if reason:
                reasons[reason] += 1
                if len(examples) < 20:
                    examples.append({"image_id": rec.image_id, "ann_id": o.source_ann_id, "category": o.category,
                                     "reason": reason, **figures})
    rejected = sum(reasons.values())
    return {"gt_objects": n, "rejected": rejected, "rejected_fraction": rejected / n if n else None,
            "by_reason": dict(reasons.most_common()), "examples": examples}


# ---------------------------------------------------------------------------------------
# per-pair figures
# ---------------------------------------------------------------------------------------
def yaw_alignment(pred: Box3D, gt: Box3D) -> tuple[float, bool]:
    """Symmetric yaw error between two gravity-aligned boxes, and whether w/l are swapped.

    A box is unchanged by a 180-degree turn, and a 90-degree turn with w and l exchanged
    describes the same box, so the error is the angle (degrees, in [0, 45]) between the
    pred's x axis and the nearest of the GT's horizontal axes (+-x, +-z); `swapped` is True
    when that nearest axis is the GT's z axis (then pred w pairs with GT l).
    """
    px = pred.R_cam[:, 0]
    theta = math.degrees(math.atan2(float(px @ gt.R_cam[:, 2]), float(px @ gt.R_cam[:, 0])))
    k = round(theta / 90.0)
    return abs(theta - 90.0 * k), bool(k % 2)


def pair_figures(pred: Box3D, gt: Box3D, K: np.ndarray, image_size: tuple[int, int], gt_bbox_xyxy) -> dict:
    """Figures of one matched pair.

    Args:
        pred, gt: boxes in the same camera frame (metres).
        K: (3, 3) intrinsics of the stored image (for the projection of `pred`).
        image_size: (W, H) of the stored image, pixels.
        gt_bbox_xyxy: GT reference 2D box (the projection of `gt`) in pixel-edge
            coordinates of the stored image, or None.
    Returns:
        iou3d; center_err_m (Euclidean, metres); abs_rel_size_err (mean over w, h, l of
        |pred - gt| / gt, with w/l paired as in `yaw_alignment`); abs_rel_depth_err
        (|z_pred - z_gt| / z_gt of the centres); yaw_err_deg; proj_iou (IoU of pred's
        projection with `gt_bbox_xyxy`, None without one).
    """
    yaw_err, swapped = yaw_alignment(pred, gt)
    dp = pred.dimensions[[2, 1, 0]] if swapped else pred.dimensions
    size_err = float(np.mean(np.abs(dp - gt.dimensions) / gt.dimensions))
    zg = float(gt.center_cam[2])
    proj = None
    if gt_bbox_xyxy is not None:
        proj = iou_2d(project_box(pred, K, image_size), gt_bbox_xyxy)
    return {
        "iou3d": iou_3d(pred, gt),
        "center_err_m": float(np.linalg.norm(pred.center_cam - gt.center_cam)),
        "abs_rel_size_err": size_err,
        "abs_rel_depth_err": abs(float(pred.center_cam[2]) - zg) / zg if zg > 0 else None,
        "yaw_err_deg": yaw_err,
        "proj_iou": proj,
    }


def hungarian_match(score: np.ndarray, min_score: float) -> list[tuple[int, int]]:
    """Pairs (row, col) of a maximum-total-score assignment with score >= min_score.

    Args:
        score: (P, G) matrix, e.g. IoU of P predictions with G GT objects.
    """
    score = np.asarray(score, dtype=np.float64)
    if score.size == 0:
        return []
    rows, cols = linear_sum_assignment(score, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if score[r, c] >= min_score and score[r, c] > 0]


def record_box(obj: dict) -> Box3D | None:
    """Box3D of a repository object dict (its `box3d`), or None when absent/unusable."""
    b = obj.get("box3d")
    if not b:
        return None
    try:  # the stored yaw is used as is: recomputing it (Box3D.from_omni3d) costs ~4x more
        box = Box3D(b["center_cam"], b["dimensions"], b["R_cam"], float(b.get("yaw") or 0.0))
    except (KeyError, TypeError, ValueError):
        return None
    if not (np.all(np.isfinite(box.center_cam)) and np.all(box.dimensions > 0)):
        return None
    return box


# ---------------------------------------------------------------------------------------
# accumulation
# ---------------------------------------------------------------------------------------
@dataclass
class GTResult:
    """The outcome for one GT object: matched (with figures), rejected (reason) or missing."""

    image_id: int | str
    ann_id: int | str
    category: str
    status: str  # matched | rejected | missing
    reason: str | None = None
    figures: dict | None = None
    pred_object_id: str | None = None


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _median(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


def summarise(results: list[GTResult], n_pred_unmatched: int = 0, n_pred_kept: int | None = None) -> dict:
    """Aggregate figures of a list of GT results.

    Returns a dict with gt_objects, matched, rejected, missing; mean_iou3d over ALL GT
    objects (rejected and missing count 0); mean_iou3d_matched; recall_iou25 / recall_iou50
    (fraction of all GT objects matched with 3D IoU >= 0.25 / 0.5); median_center_err_m,
    median_abs_rel_size_err, median_abs_rel_depth_err, median_yaw_err_deg and
    mean_proj_iou over matched objects; rejection_reasons of the rejected ones. With
    `n_pred_kept`, also precision_iou25 (matched with IoU >= 0.25 / kept predictions).
    """
    n = len(results)
    m = [r.figures for r in results if r.status == "matched"]
    ious = [f["iou3d"] for f in m]
    out = {
        "gt_objects": n,
        "matched": len(m),
        "rejected": sum(r.status == "rejected" for r in results),
        "missing": sum(r.status == "missing" for r in results),
        "mean_iou3d": float(sum(ious) / n) if n else None,
        "mean_iou3d_matched": _mean(ious),
        "recall_iou25": float(sum(i >= 0.25 for i in ious) / n) if n else None,
        "recall_iou50": float(sum(i >= 0.5 for i in ious) / n) if n else None,
        "median_center_err_m": _median(f["center_err_m"] for f in m),
        "median_abs_rel_size_err": _median(f["abs_rel_size_err"] for f in m),
        "median_abs_rel_depth_err": _median(f["abs_rel_depth_err"] for f in m),
        "median_yaw_err_deg": _median(f["yaw_err_deg"] for f in m),
        "mean_proj_iou": _mean(f["proj_iou"] for f in m),
        "rejection_reasons": dict(Counter(r.reason or "unknown" for r in results if r.status == "rejected").most_common()),
    }
    if n_pred_kept is not None:
        out["lifted_kept"] = n_pred_kept
        out["lifted_unmatched"] = n_pred_unmatched
        out["precision_iou25"] = float(sum(i >= 0.25 for i in ious) / n_pred_kept) if n_pred_kept else None
    return out


def _basename(p: str) -> str:
    return p.replace("\\", "/").rsplit("/", 1)[-1]


class Evaluator:
    """Streams repository image records against a GTSet (see module docstring).

    Usage: `ev = Evaluator(gt); for rec in records: ev.add(rec); report = ev.summary()`.
    """

    def __init__(self, gt: GTSet, match: str = "auto", min_match_iou: float = 0.1,
                 same_category: bool = False, images: str = "all"):
        if match not in MATCH_MODES:
            raise ValueError(f"match must be one of {MATCH_MODES}, got {match!r}")
        if images not in ("all", "present"):
            raise ValueError(f"images must be 'all' or 'present', got {images!r}")
        self.gt = gt
        self.match = match
        self.min_match_iou = float(min_match_iou)
        self.same_category = same_category
        self.images_mode = images
        self._by_name: dict[str, object] = {}
        for iid, im in gt.images.items():
            if im.file_name:
                self._by_name.setdefault(im.file_name, iid)
                self._by_name.setdefault(_basename(im.file_name), iid)
        self.results: list[GTResult] = []
        self.seen: set = set()
        self.mode_counts: Counter = Counter()
        self.records = 0
        self.records_without_gt = 0
        self.pred_kept = 0
        self.pred_unmatched = 0

    # -- image lookup ----------------------------------------------------------------------
    def find_gt_image(self, record: dict):
        """GT image id for a repository record: by file name, else by image id; or None."""
        for name in (record.get("file_name"), record.get("image_path")):
            if name:
                iid = self._by_name.get(name, self._by_name.get(_basename(str(name))))
                if iid is not None:
                    return iid
        iid = record.get("image_id")
        if iid in self.gt.images:
            return iid
        if isinstance(iid, str) and iid.isdigit() and int(iid) in self.gt.images:
            return int(iid)
        return None

    def _choose_mode(self, objs: list[dict], gt_im: GTImage) -> str:
        if self.match != "auto":
            return self.match
        gt_ids = {str(o.ann_id) for o in gt_im.objects}
        ids = [str(o["source_ann_id"]) for o in objs if o.get("source_ann_id") is not None]
        if ids and all(i in gt_ids for i in ids):
            return "ann_id"
        if ids and not gt_ids:  # no scorable GT object: nothing to disagree with
            return "ann_id"
        return "proj_iou"

    # -- per image -------------------------------------------------------------------------
    def add(self, record: dict) -> None:
        """Score one repository image record (dict of schemas/image_record.schema.json)."""
        self.records += 1
        iid = self.find_gt_image(record)
        if iid is None:
            self.records_without_gt += 1
            return
        if iid in self.seen:
            log.warning("image %s appears twice in the repository; scoring the first", iid)
            return
        self.seen.add(iid)
        gt_im: GTImage = self.gt.images[iid]
        objs = list(record.get("objects") or [])
        W, H = int(record.get("width") or gt_im.width or 1), int(record.get("height") or gt_im.height or 1)
        K = record.get("K")
        K = np.asarray(K, dtype=np.float64) if K is not None else gt_im.K
        sx = W / gt_im.width if gt_im.width else 1.0
        sy = H / gt_im.height if gt_im.height else 1.0

        def scaled(b):
            return None if b is None else (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)

        # reference for projected IoU: the GT 3D box's projection; for pairing rejected
        # objects (which have only their source 2D box): the annotated 2D box
        gt_ref = [scaled(g.proj_xyxy if g.proj_xyxy is not None else g.bbox_xyxy) for g in gt_im.objects]
        gt_ann2d = [scaled(g.bbox_xyxy if g.bbox_xyxy is not None else g.proj_xyxy) for g in gt_im.objects]
        boxes = [record_box(o) if o.get("status", "kept") == "kept" else None for o in objs]
        kept = [(o, b) for o, b in zip(objs, boxes) if b is not None]
        rejected = [o for o, b in zip(objs, boxes) if b is None]
        self.pred_kept += len(kept)
        mode = self._choose_mode(objs, gt_im)
        self.mode_counts[mode] += 1

        gi_to_pred: dict[int, tuple[dict, Box3D]] = {}
        gi_to_rej: dict[int, dict] = {}
        if mode == "ann_id":
            by_id = {str(g.ann_id): gi for gi, g in enumerate(gt_im.objects)}
            for o, b in kept:
                gi = by_id.get(str(o.get("source_ann_id")))
                if gi is not None and gi not in gi_to_pred:
                    gi_to_pred[gi] = (o, b)
            for o in rejected:
                gi = by_id.get(str(o.get("source_ann_id")))
                if gi is not None and gi not in gi_to_pred and gi not in gi_to_rej:
                    gi_to_rej[gi] = o
        else:
            proj = [project_box(b, K, (W, H)) if K is not None else None for _, b in kept]
            score = np.zeros((len(kept), len(gt_im.objects)))
            for pi, (o, _) in enumerate(kept):
                for gi, g in enumerate(gt_im.objects):
                    if self.same_category and o.get("category") != g.category:
                        continue
                    score[pi, gi] = iou_2d(proj[pi], gt_ref[gi])
            for pi, gi in hungarian_match(score, self.min_match_iou):
                gi_to_pred[gi] = kept[pi]
            free = [gi for gi in range(len(gt_im.objects)) if gi not in gi_to_pred]
            score = np.zeros((len(rejected), len(free)))
            for ri, o in enumerate(rejected):
                bb = o.get("bbox_xyxy")
                for j, gi in enumerate(free):
                    score[ri, j] = iou_2d(tuple(bb), gt_ann2d[gi]) if bb else 0.0
            for ri, j in hungarian_match(score, 0.5):
                gi_to_rej[free[j]] = rejected[ri]
        self.pred_unmatched += len(kept) - len(gi_to_pred)

        for gi, g in enumerate(gt_im.objects):
            if gi in gi_to_pred:
                o, b = gi_to_pred[gi]
                figs = pair_figures(b, g.box, K if K is not None else np.eye(3), (W, H), gt_ref[gi])
                self.results.append(GTResult(iid, g.ann_id, g.category, "matched", None, figs, o.get("object_id")))
            elif gi in gi_to_rej:
                o = gi_to_rej[gi]
                self.results.append(GTResult(iid, g.ann_id, g.category, "rejected",
                                             o.get("reason") or record.get("reason") or "rejected", None,
                                             o.get("object_id")))
            else:
                self.results.append(GTResult(iid, g.ann_id, g.category, "missing"))

    # -- report ----------------------------------------------------------------------------
    def summary(self) -> dict:
        """One JSON-ready dict: counts, overall figures (see `summarise`), per_category."""
        results = list(self.results)
        missing_images = [iid for iid in self.gt.images if iid not in self.seen]
        if self.images_mode == "all":
            for iid in missing_images:
                for g in self.gt.images[iid].objects:
                    results.append(GTResult(iid, g.ann_id, g.category, "missing", "image_not_in_repository"))
        n_images = len(self.gt.images) if self.images_mode == "all" else len(self.seen)
        out = {"mode": "gt", "images": n_images, "images_in_repository": len(self.seen),
               "images_missing": len(missing_images), "repository_records": self.records,
               "repository_records_without_gt": self.records_without_gt,
               "match_mode_images": dict(self.mode_counts),
               "gt_skipped": dict(self.gt.skipped)}
        out.update(summarise(results, self.pred_unmatched, self.pred_kept))
        per_cat: dict[str, list[GTResult]] = defaultdict(list)
        for r in results:
            per_cat[r.category].append(r)
        out["per_category"] = {c: summarise(rs) for c, rs in sorted(per_cat.items())}
        return out


# ---------------------------------------------------------------------------------------
# self-consistency (no GT)
# ---------------------------------------------------------------------------------------
def depth_box_agreement(box: Box3D, bbox_xyxy, depth: np.ndarray, K: np.ndarray, tol_rel: float = 0.1) -> dict | None:
    """How well a 3D box agrees with the depth map inside its source 2D box.

    Args:
        box: the lifted box, camera frame, metres.
        bbox_xyxy: source 2D box, pixel-edge coordinates of the stored image.
        depth: (H, W) z-depth in metres (0 or non-finite = invalid).
        K: (3, 3) intrinsics of the stored image.
        tol_rel: relative depth tolerance around the box's depth range.
    Returns:
        None when the 2D box holds no valid depth, else
        median_depth_m: median depth of the valid pixels in the 2D box;
        in_range: whether that median lies in the box's z range [z_near, z_far] widened
            by tol_rel * median;
        gap_rel: distance of the median from that (unwidened) range / median (0 inside);
        inside_frac: fraction of the back-projected pixels of the 2D box that fall inside
            the 3D box (how much of the depth evidence the box explains; occluders and
            background pixels lower it).
    """
    H, W = depth.shape
    x0, y0, x1, y1 = bbox_xyxy
    c0, r0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    c1, r1 = min(W, int(math.ceil(x1))), min(H, int(math.ceil(y1)))
    if c1 <= c0 or r1 <= r0:
        return None
    d = depth[r0:r1, c0:c1].astype(np.float64)
    valid = np.isfinite(d) & (d > 0)
    if not valid.any():
        return None
    med = float(np.median(d[valid]))
    z = box.corners()[:, 2]
    zn, zf = float(z.min()), float(z.max())
    gap = max(0.0, zn - med, med - zf)
    pts = backproject(np.where(valid, d, 0.0), crop_K(K, c0, r0))[valid]
    inside = float(box.contains(pts, tol=0.02).mean())
    return {"median_depth_m": med, "in_range": bool(gap <= tol_rel * med), "gap_rel": gap / med,
            "inside_frac": inside}


class SelfConsistency:
    """Streams repository image records and reports what every repository can say about
    itself (see module docstring). `add(record, depth=None)` with depth (H, W) metres."""

    def __init__(self):
        self.images = Counter()
        self.image_reasons = Counter()
        self.object_reasons = Counter()
        self.objects = Counter()
        self.proj: list[float] = []
        self.proj_by_cat: dict[str, list[float]] = defaultdict(list)
        self.depth_in_range: list[bool] = []
        self.depth_gap: list[float] = []
        self.inside_frac: list[float] = []
        self.quality = defaultdict(list)
        self.cat_counts = defaultdict(Counter)
        self.images_with_depth = 0

    def add(self, record: dict, depth: np.ndarray | None = None) -> None:
        """One image record; `depth` (H, W) z-depth in metres of the stored image, or None."""
        status = record.get("status", "lifted")
        self.images[status] += 1
        if status != "lifted":
            self.image_reasons[record.get("reason") or "unknown"] += 1
        K = record.get("K")
        K = None if K is None else np.asarray(K, dtype=np.float64)
        W, H = record.get("width"), record.get("height")
        if depth is not None:
            self.images_with_depth += 1
        for o in record.get("objects") or []:
            cat = str(o.get("category", "?"))
            box = record_box(o) if o.get("status", "kept") == "kept" else None
            if box is None:
                self.objects["rejected"] += 1
                self.cat_counts[cat]["rejected"] += 1
                self.object_reasons[o.get("reason") or "no_box3d"] += 1
                continue
            self.objects["kept"] += 1
            self.cat_counts[cat]["kept"] += 1
            q = o.get("quality") or {}
            for k in ("n_points", "depth_spread_m", "visible_fraction"):
                if isinstance(q.get(k), (int, float)):
                    self.quality[k].append(float(q[k]))
            bb = o.get("bbox_xyxy")
            if K is None or not bb:
                continue
            p = iou_2d(project_box(box, K, (W, H) if W and H else None), tuple(bb))
            self.proj.append(p)
            self.proj_by_cat[cat].append(p)
            if depth is not None:
                a = depth_box_agreement(box, bb, depth, K)
                if a is not None:
                    self.depth_in_range.append(a["in_range"])
                    self.depth_gap.append(a["gap_rel"])
                    self.inside_frac.append(a["inside_frac"])

    def summary(self) -> dict:
        """JSON-ready dict of the self-consistency figures."""
        proj = np.asarray(self.proj)
        out = {
            "mode": "self_consistency",
            "images": int(sum(self.images.values())),
            "images_lifted": int(self.images.get("lifted", 0)),
            "images_rejected": int(sum(v for k, v in self.images.items() if k != "lifted")),
            "objects": int(sum(self.objects.values())),
            "objects_kept": int(self.objects.get("kept", 0)),
            "objects_rejected": int(self.objects.get("rejected", 0)),
            "mean_proj_iou": float(proj.mean()) if proj.size else None,
            "median_proj_iou": float(np.median(proj)) if proj.size else None,
            "proj_iou_ge50": float((proj >= 0.5).mean()) if proj.size else None,
            "proj_iou_ge70": float((proj >= 0.7).mean()) if proj.size else None,
            "depth_agreement": {
                "images_with_depth": self.images_with_depth,
                "objects": len(self.depth_in_range),
                "in_range_frac": _mean([float(x) for x in self.depth_in_range]),
                "median_gap_rel": _median(self.depth_gap),
                "median_inside_frac": _median(self.inside_frac),
            },
            "quality": {k: {"median": _median(v), "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90))}
                        for k, v in sorted(self.quality.items()) if v},
            "rejection_reasons": dict(self.object_reasons.most_common()),
            "image_rejection_reasons": dict(self.image_reasons.most_common()),
            "per_category": {
                c: {"kept": int(n.get("kept", 0)), "rejected": int(n.get("rejected", 0)),
                    "mean_proj_iou": _mean(self.proj_by_cat.get(c, []))}
                for c, n in sorted(self.cat_counts.items())
            },
        }
        return out


def evaluate_records(records: Iterable[dict], gt: GTSet, **kw) -> dict:
    """Convenience: run an Evaluator over `records` and return its summary."""
    ev = Evaluator(gt, **kw)
    for r in records:
        ev.add(r)
    return ev.summary()

"""Lift one image: 2D objects (mask or box) + metric depth + K -> gravity-aligned 3D boxes.

Every input object ends as either a kept 3D box with quality figures or a rejection with
a reason code from `lifting.lift.config.REASONS`; `lift_image` never drops one silently.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from lifting.boxes import clip_box_2d, iou_2d, project_box
from lifting.camera import ray_slope, validate_K
from lifting.lift.boxseg import segment_boxes
from lifting.lift.cloud import clean_points
from lifting.lift.config import LiftConfig
from lifting.lift.filters import check_box, check_pixels, is_specific
from lifting.lift.fit import fit_box, quantiles
from lifting.lift.gravity import GravityEstimate, estimate_gravity, sample_points
from lifting.lift.pixels import box_slices, hidden_edges, object_points, valid_and_edges
from lifting.lift.uncertainty import box_uncertainty
from lifting.masks import crop_to_content, decode_segmentation_crop
from lifting.priors import SOLID_SURFACE
from lifting.records import SCHEMA_VERSION, ImageRecord, Object2D

log = logging.getLogger(__name__)


class LiftInputError(ValueError):
    """The image as a whole cannot be lifted (bad K, depth of the wrong size); `.reason` is a code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class _Priors:
    """Lazy access to the category size priors (None when no table is available)."""

    table: object = None

    def dims(self, category: str):
        if self.table is None:
            return None, None
        p = self.table.get(category)
        return p, np.asarray(p.dims, dtype=np.float64)


_PRIORS: _Priors | None = None


def default_priors() -> _Priors:
    global _PRIORS
    if _PRIORS is None:
        from lifting.priors import SizePriors

        _PRIORS = _Priors(SizePriors.load())
    return _PRIORS


def _decode(obj: Object2D, h: int, w: int):
    """(mask crop, None) of an annotation -- crop = ((h', w') bool, row0, col0), the mask's
    tight window in the H x W image -- or (None, the reason it cannot be used)."""
    try:
        m = decode_segmentation_crop(obj.segmentation, h, w)  # validates before decoding
    except ValueError as e:
        return None, str(e)
    return (m, None) if m is not None else (None, "mask_empty")


def lift_image(record: ImageRecord, depth: np.ndarray, K: np.ndarray, *, K_source: str, depth_source: str,
               masks: dict | None = None, config: LiftConfig | None = None, priors=None,
               gravity: GravityEstimate | None = None) -> dict:
    """Lift every object of one image.

    Args:
        record: the image with its 2D objects (bbox_xyxy in pixel-edge coordinates of the
            stored image; `segmentation` decoded here when present).
        depth: (H, W) float metric z-depth, metres, at the image's resolution; 0/NaN invalid.
        K: (3, 3) intrinsics of the image.
        K_source, depth_source: provenance written into the record ("dataset",
            "model:depth-anything-v2", "sensor", ...).
        masks: optional {object_id: (H, W) bool} from a segmenter; overrides annotation masks.
            Masks are handled as their tight crops from here on (`lifting.masks.crop_to_content`).
        config: thresholds (LiftConfig); priors: category size priors, a `lifting.priors.SizePriors`
            (default: the packaged table).
        gravity: precomputed gravity/floor estimate (else estimated here).
    Returns:
        The repository image record (schemas/image_record.schema.json), every object kept
        (with `box3d` and `quality`) or rejected (with `reason`), plus `stats` counts.
    Raises:
        LiftInputError when the whole image is unusable (bad K, depth of the wrong shape, or
        points farther out than `max_scene_extent_m`: checked before anything per object is
        allocated, so memory stays bounded whatever K and depth hold).
    """
    cfg = config or LiftConfig()
    priors = default_priors() if priors is None else priors if isinstance(priors, _Priors) else _Priors(priors)
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise LiftInputError("depth_bad_shape", f"depth must be (H, W), got {depth.shape}")
    H, W = depth.shape
    if record.width and record.height and (record.width, record.height) != (W, H):
        raise LiftInputError("depth_size_mismatch", f"depth {W}x{H} vs image {record.width}x{record.height}")
    K = np.asarray(K, dtype=np.float64)
    bad_k = validate_K(K, W, H)
    if bad_k:
        raise LiftInputError(bad_k, f"K={K.tolist()}")

    valid, edges = _checked_depth(depth, K, cfg)
    if gravity is None:
        pts = sample_points(depth, valid, K, n=4000, seed=0)
        gravity = estimate_gravity(pts, np.ones(len(pts), dtype=bool), cfg, record.gravity_cam, seed=0)
    g = gravity.gravity_cam
    floor = gravity.floor
    sparse = float(np.count_nonzero(valid)) < cfg.sparse_valid_frac * valid.size
    # how far an object's own depth is trusted against its category's height (`_fuse_depth`)
    depth_kind = _depth_kind(str(depth_source), sparse)
    depth_rescale = 1.0
    if depth_kind == "model" and cfg.model_scale_sigma:
        # the factor recorded is the one applied
        depth_rescale = round(depth_scale_from_sizes(record.objects, depth, valid, K, floor, cfg, priors), 4)
        if depth_rescale != 1.0:
            depth = depth * np.float32(depth_rescale)
            floor = None if floor is None else floor.scaled(depth_rescale)
            valid, edges = _checked_depth(depth, K, cfg)

    objects_out: list[dict] = []
    reasons: Counter = Counter()
    # --- masks: given > annotation > box-only segmentation (all boxes together)
    obj_masks: dict[str, tuple] = {}  # object_id -> (crop, row0, col0)
    mask_source: dict[str, str] = {}
    pre_reject: dict[str, str] = {}
    box_only: list[Object2D] = []
    for o in record.objects:
        if cfg.reject_crowd and o.iscrowd:
            pre_reject[o.object_id] = "crowd"
            continue
        if box_slices(o.bbox_xyxy, (H, W)) is None:
            pre_reject[o.object_id] = "bbox_outside_image"
            continue
        if masks and o.object_id in masks:
            mask_source[o.object_id] = "segmenter"
            m = np.asarray(masks[o.object_id], dtype=bool)
            crop = crop_to_content(m) if m.shape == (H, W) else None
            if crop is None:
                pre_reject[o.object_id] = "mask_empty" if m.shape == (H, W) else "mask_invalid"
                continue
            obj_masks[o.object_id] = crop
        elif o.segmentation is not None:
            m, why = _decode(o, H, W)
            if m is None:
                pre_reject[o.object_id] = "mask_empty" if why == "mask_empty" else "mask_invalid"
                continue
            obj_masks[o.object_id] = m
            mask_source[o.object_id] = "annotation"
        else:
            box_only.append(o)
    frustum: dict[str, object] = {}
    if box_only and cfg.boxseg_method == "frustum":
        from lifting.lift.frustum import segment_frustums

        heights = [_prior_height(priors, o.category) for o in box_only]
        # dense depth: pixels on a depth discontinuity (flying pixels) bridge an object and
        # what lies behind it; sparse depth has no pixel neighbours to judge that by
        cand = valid if sparse else valid & ~edges
        segs = segment_frustums(np.array([o.bbox_xyxy for o in box_only], dtype=np.float64), depth, cand, K, floor,
                                cfg, sparse, heights, (W, H))
        for o, sg in zip(box_only, segs):
            if sg is None:
                pre_reject[o.object_id] = "no_foreground_cluster"
            else:
                frustum[o.object_id] = sg
                mask_source[o.object_id] = "depth_frustum"
        box_only = []
    if box_only:
        cand = valid & ~edges
        if floor is not None:
            from lifting.camera import backproject

            xyz = backproject(np.where(valid, depth, 0), K)
            hgt = floor.height_above(xyz)
            cand &= hgt > (cfg.floor_inlier_m + cfg.floor_inlier_rel * depth)
        segs = segment_boxes(np.array([o.bbox_xyxy for o in box_only], dtype=np.float64), depth, cand, cfg)
        for o, m in zip(box_only, segs):
            if m is None:
                pre_reject[o.object_id] = "no_foreground_cluster"
            else:
                obj_masks[o.object_id] = m
                mask_source[o.object_id] = "depth_box"

    staged: list[tuple[dict, str | None]] = []
    pending: list[int] = []  # objects that take their category's box (prior fallback)
    fallback = ("no_foreground_cluster", "too_few_points") + (("depth_invalid",) if sparse else ())
    for i, o in enumerate(record.objects):
        entry = {
            "object_id": o.object_id,
            "category": o.category,
            "category_raw": o.category_raw,
            "source_ann_id": o.source_ann_id,
            "bbox_xyxy": [float(v) for v in o.bbox_xyxy],
            "status": "rejected",
            "reason": None,
            "mask_source": mask_source.get(o.object_id),
            "box3d": None,
            "quality": {},
        }
        reason = pre_reject.get(o.object_id)
        if reason is None and o.object_id in frustum:
            sg = frustum[o.object_id]
            reason = _fit_object(o, sg.xyz, sg.hidden, K, g, floor, cfg, priors, (W, H), entry, depth_kind)
        elif reason is None:
            reason = _lift_object(o, obj_masks[o.object_id], depth, valid, edges, K, g, floor, cfg, priors,
                                  (W, H), entry, depth_kind)
        if reason in fallback and cfg.prior_fallback and (depth_kind != "dense" or not _depth_sees(o, valid, cfg)):
            pending.append(i)
        staged.append((entry, reason))
    if pending:
        from lifting.boxes import Box3D

        # nearest first (by the 2D box geometry): a LiDAR return inside the 3D box of an
        # object already placed (from its cluster, or a nearer prior box) is that object's, not
        # a candidate for a farther one whose 2D box it is in: a person 2 m behind a car took
        # the car's returns when the 2D geometry (10-15 % at 40 m) could not tell the two apart
        claimed = [Box3D.from_omni3d(e["box3d"]) for e, r in staged if r is None]
        near_first = sorted(pending, key=lambda i: (_geo_distance(record.objects[i], K, floor, cfg, priors, (W, H))
                                                    or (math.inf,))[0])
        for i in near_first:
            o, entry = record.objects[i], staged[i][0]
            sg = frustum.get(o.object_id)
            z_hint = sg.xyz[:, 2] if sg is not None and len(sg.xyz) else None
            if depth_kind == "sparse":
                # a far object has a handful of returns, too few for a cluster and mixed with
                # what lies before and behind it: all the box's returns off the road are
                # candidates, and the prior box picks those its geometry agrees with
                z_hint = _box_returns(o, depth, valid, K, floor, cfg, claimed if cfg.claim_returns else ())
            alt: dict = {"quality": {}}
            if _prior_box(o, K, g, floor, cfg, priors, (W, H), alt, z_hint, depth_kind):
                # kept with the prior's box; a rejection keeps its own reason and figures
                entry["box3d"] = alt["box3d"]
                entry["quality"].update(alt["quality"])
                staged[i] = (entry, None)
                claimed.append(Box3D.from_omni3d(alt["box3d"]))
    for o, (entry, reason) in zip(record.objects, staged):
        if reason is None:
            entry["status"] = "kept"
            c = entry["box3d"]["center_cam"]
            geo = _geo_distance(o, K, floor, cfg, priors, (W, H))
            # the box's near side against where its 2D box and size prior put it (beyond 2 sigma)
            near = float(c[2]) - 0.5 * min(entry["box3d"]["dimensions"][0], entry["box3d"]["dimensions"][2])
            dis = 0.0 if geo is None or near <= 0 else max(0.0, abs(math.log(near / geo[0])) - 2.0 * geo[1])
            entry["quality"]["uncertainty"] = box_uncertainty(
                depth_kind, entry["quality"].get("box_from") == "size_prior", math.sqrt(sum(v * v for v in c)), dis)
        else:
            entry["reason"] = reason
        reasons[reason or "kept"] += 1
        objects_out.append(entry)

    kept = reasons.get("kept", 0)
    return {
        "schema_version": SCHEMA_VERSION,
        "key": record.key,
        "source": record.source,
        "image_id": record.image_id,
        "file_name": str(record.extra.get("file_name", record.image_path)),
        "width": W,
        "height": H,
        "K": K.tolist(),
        "K_source": K_source,
        "depth_source": depth_source,
        "gravity_cam": [float(v) for v in g],
        "gravity_source": gravity.source,
        "floor_offset_m": None if floor is None else round(float(floor.offset), 4),
        "depth_rescale": depth_rescale,
        "status": "lifted" if kept else "rejected",
        "reason": None if kept else ("no_objects" if not record.objects else "no_object_kept"),
        "tags": list(record.tags),
        "objects": objects_out,
        "stats": dict(sorted(reasons.items())),
    }


def _checked_depth(depth: np.ndarray, K: np.ndarray, cfg: LiftConfig) -> tuple[np.ndarray, np.ndarray]:
    """(valid, edges) of a depth map (`valid_and_edges`); LiftInputError when no pixel is
    valid or its points reach beyond `max_scene_extent_m` (checked before anything per object
    is allocated, so memory stays bounded whatever K and depth hold)."""
    H, W = depth.shape
    valid, edges = valid_and_edges(depth, cfg)
    if not valid.any():
        raise LiftInputError("depth_all_invalid", "no pixel has valid depth")
    extent = float(depth[valid].max()) * max(1.0, ray_slope(K, W, H))
    if cfg.max_scene_extent_m is not None and extent > cfg.max_scene_extent_m:
        raise LiftInputError("scene_extent_over_budget",
                             f"points reach {extent:.3g} m from the camera (> max_scene_extent_m "
                             f"{cfg.max_scene_extent_m:g}): K={K.tolist()}")
    return valid, edges


def depth_scale_from_sizes(objects, depth: np.ndarray, valid: np.ndarray, K, floor, cfg: LiftConfig, priors) -> float:
    """The factor that brings a monocular model's depth map to the metric scale its objects'
    sizes say (1.0 when fewer than `model_scale_min_objects` objects can tell).

    A metric depth model's largest error is one scale per image (10-20 %, which costs most
    of the 3D IoU); each object of known category tells it: the distance at which its prior
    height fills its 2D box height (`_box_distance`, relative error the prior's height
    spread) against the depth the model gives its box (the nearer quartile of the box's
    central part, where the object is rather than what lies behind it). The log-ratios are
    combined by inverse variance around their weighted median (an object 2.5 sigma away is
    dropped: a child, a toy car, a box that is mostly occluder) and shrunk towards 1 by the
    model's own scale spread `model_scale_sigma`; the factor is kept within [0.5, 2] (a
    model off by more than that is not metric). Only objects typically at least
    `model_scale_min_height_m` tall (people, cars, chairs: the 2D box of a switch or a book
    is a few sloppy pixels off in tens) whose box bottom is not hidden by something nearer
    count. One object alone moves its own depth (`_fuse_depth`); here several agree on the
    whole map. `_box_distance`'s small correction for objects seen from above takes the
    camera height from `floor`, at the model's scale (finding the scale again at the
    rescaled floor's height measured worse: 0.288 -> 0.269 on KITTI stereo lifted as a
    model's depth)."""
    H, W = depth.shape
    camera_height = None if floor is None else float(floor.offset)
    r, w = [], []
    for o in objects:
        prior, dims = priors.dims(o.category)
        x0, y0, x1, y1 = (float(v) for v in o.bbox_xyxy)
        if not is_specific(prior) or getattr(o, "iscrowd", False) or y0 <= 1 or y1 >= H - 1 or y1 - y0 < 8:
            continue
        bw, bh = x1 - x0, y1 - y0
        sl = box_slices((x0 + 0.25 * bw, y0 + 0.2 * bh, x1 - 0.25 * bw, y1 - 0.2 * bh), (H, W))
        if sl is None:
            continue
        d = depth[sl][valid[sl]]
        if len(d) < 10:
            continue
        z_d = float(np.percentile(d, 25))
        sigma = _height_sigma(prior)
        if (z_d <= 0 or float(dims[1]) < cfg.model_scale_min_height_m
                or _bottom_occluded((x0, y0, x1, y1), depth, valid, z_d, K, floor)):
            continue
        r.append(math.log(_box_distance(bh, K, dims, camera_height) / z_d))
        w.append(1.0 / sigma ** 2)
    if len(r) < cfg.model_scale_min_objects:
        return 1.0
    r_, w_ = np.asarray(r), np.asarray(w)
    order = np.argsort(r_)
    cum = np.cumsum(w_[order])
    med = float(r_[order][np.searchsorted(cum, 0.5 * cum[-1])])
    keep = np.abs(r_ - med) <= 2.5 / np.sqrt(w_)
    if int(keep.sum()) < cfg.model_scale_min_objects:
        return 1.0
    log_s = float((w_[keep] * r_[keep]).sum() / (w_[keep].sum() + 1.0 / cfg.model_scale_sigma ** 2))
    return float(math.exp(min(max(log_s, -math.log(2.0)), math.log(2.0))))


def _bottom_occluded(box, depth: np.ndarray, valid: np.ndarray, z: float, K, floor) -> bool:
    """Whether something nearer than the object (depth z) covers the rows just below its 2D
    box (a chair behind a table, a car behind a parked car): its box then ends above its
    foot and its height in the image says nothing about its size. What stands on a floor
    has the floor just in front of it there: points on the floor (when one is known), or
    else at about its own depth, are no occluder. (`pixels.hidden_edges` asks the same of a
    mask's own edge pixels once an object is segmented; here only its 2D box is known.)"""
    from lifting.camera import unproject_points

    x0, y0, x1, y1 = box
    H = depth.shape[0]
    strip = box_slices((x0 + 0.25 * (x1 - x0), y1, x1 - 0.25 * (x1 - x0), min(H, y1 + max(3.0, 0.1 * (y1 - y0)))),
                       depth.shape)
    if strip is None:
        return False
    vv, uu = np.nonzero(valid[strip])
    if len(vv) == 0:
        return False
    d = depth[strip][vv, uu]
    if floor is None:
        return float(np.median(d)) < 0.85 * z
    xyz = unproject_points(np.stack([uu + strip[1].start, vv + strip[0].start], axis=1), d, K)
    off_floor = floor.height_above(xyz) > 0.1 + 0.01 * d
    return float(np.mean(off_floor & (d < z))) > 0.5


def _depth_kind(depth_source: str, sparse: bool) -> str:
    """sparse (LiDAR-like, whatever the source says) | model (a depth network, or a sensor
    record saying sensor:mono) | stereo (sensor:stereo) | dense (a depth camera)."""
    if sparse:
        return "sparse"
    if depth_source.startswith("model") or depth_source == "sensor:mono":
        return "model"
    return "stereo" if depth_source == "sensor:stereo" else "dense"


def _prior_height(priors, category: str):
    """(typical height m, log spread of heights, footprint diagonal m) of a category's size
    prior, None for the generic one."""
    prior, dims = priors.dims(category)
    if not is_specific(prior):
        return None
    return float(dims[1]), _height_sigma(prior), float(math.hypot(dims[0], dims[2]))


def _depth_sees(o: Object2D, valid: np.ndarray, cfg: LiftConfig) -> bool:
    """Whether a depth camera measured most of the object's 2D box: then an object found in
    no cluster of it was claimed by nearer ones (a duplicate box, an occluder), and a size
    prior box would float where the sensor sees through. (Stereo and model depth fail to
    separate far objects while measuring every pixel: there the prior box stays.)"""
    sl = box_slices(o.bbox_xyxy, valid.shape)
    return sl is not None and float(valid[sl].mean()) >= (cfg.min_valid_depth_frac or 0.2)


def _lift_object(o: Object2D, mask: tuple, depth, valid, edges, K, g, floor, cfg: LiftConfig, priors,
                 image_size, entry: dict, depth_kind: str = "dense") -> str | None:
    """Lift one object in place into `entry`; returns a reason code when rejected.

    `mask` is the object's tight mask crop ((h, w) bool, row0, col0) in the image."""
    H, W = depth.shape
    sl = box_slices(o.bbox_xyxy, (H, W))
    mc, my0, mx0 = mask
    # the mask may extend a little beyond a loose 2D box: work on the union of both
    y0, y1 = min(sl[0].start, my0), max(sl[0].stop, my0 + mc.shape[0])
    x0, x1 = min(sl[1].start, mx0), max(sl[1].stop, mx0 + mc.shape[1])
    win = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    win[my0 - y0:my0 - y0 + mc.shape[0], mx0 - x0:mx0 - x0 + mc.shape[1]] = mc
    if depth_kind == "sparse":
        # LiDAR: a few % of the mask's pixels have a return, with no neighbours to erode or
        # smooth against: the returns inside the mask are the object's points
        vv, uu = np.nonzero(win & valid[y0:y1, x0:x1])
        if len(vv) == 0:
            return "depth_invalid"
        from lifting.camera import unproject_points

        xyz = unproject_points(np.stack([uu + x0, vv + y0], axis=1), depth[vv + y0, uu + x0], K)
        border = (y1 >= H - 1, x0 <= 1, x1 >= W - 1)  # occluders are not visible in sparse depth
        return _fit_object(o, xyz, border, K, g, floor, cfg, priors, image_size, entry, depth_kind)
    # large objects: work on a strided crop of about max_crop_pixels (pixel-level cost is
    # proportional to the crop; the box fit needs a few thousand points at most)
    step = max(1, int(np.ceil(np.sqrt((y1 - y0) * (x1 - x0) / cfg.max_crop_pixels))))
    sl = (slice(y0, y1, step), slice(x0, x1, step))
    pix, valid_frac, measured_frac, xyz = object_points(win[::step, ::step], depth[sl], valid[sl], edges[sl], y0, x0,
                                                        step, step, K, cfg)
    reason = check_pixels(pix, valid_frac, measured_frac, cfg)
    if reason:
        return reason
    return _fit_object(o, xyz, hidden_edges(pix, y0, x0, step, step, depth, valid), K, g, floor, cfg, priors,
                       image_size, entry, depth_kind)


def _fit_object(o: Object2D, xyz: np.ndarray, hidden3: tuple, K, g, floor, cfg: LiftConfig, priors, image_size,
                entry: dict, depth_kind: str) -> str | None:
    """Clean an object's points, fit its box, fill `entry`; a reason code when rejected.

    `hidden3` = (bottom, left, right): the object's image edges that are not observed.
    `depth_kind`: sparse | dense | stereo | model (how much the object's depth is trusted)."""
    pts = clean_points(xyz, cfg)
    entry["quality"]["n_points"] = int(len(pts))
    min_points = cfg.min_points_sparse if depth_kind == "sparse" else cfg.min_points
    if min_points is not None and len(pts) < min_points:
        return "too_few_points"
    if len(pts) < 3:
        return "too_few_points"
    prior, prior_dims = priors.dims(o.category)
    hidden, left, right = hidden3
    sides = (left, right)
    W, H = image_size
    x0, y0, x1, y1 = (float(v) for v in o.bbox_xyxy)
    top_cut = y0 <= 1
    z_measured = float(np.median(pts[:, 2]))  # before the fusion below (the refit fuses on its own)
    if cfg.depth_prior_fusion and not hidden and not top_cut and y1 < H - 1:
        scale = _fuse_depth(pts, y1 - y0, K, prior, prior_dims, depth_kind, cfg,
                            None if floor is None else float(floor.offset))
        if scale != 1.0:
            pts = pts * scale  # along the camera rays: the object's depth, corrected
            entry["quality"]["depth_rescaled"] = round(scale, 4)
    box_h = None
    if cfg.height_from_box and y0 > 1 and y1 < H - 1 and not hidden:
        box_h = (y1 - y0) * float(np.median(pts[:, 2])) / float(K[1, 1])
    fit = fit_box(pts, g, cfg, floor_offset=None if floor is None else floor.offset, prior_dims=prior_dims,
                  bottom_hidden=hidden, prior_max_height=None if prior is None else float(prior.max[1]),
                  sides_hidden=sides, box_height_m=box_h,
                  prior_length=None if prior_dims is None else float(max(prior_dims[0], prior_dims[2])),
                  prior_max_dims=_smear_cap(prior, prior_dims, depth_kind, cfg),
                  top_hidden=top_cut,
                  prior_min_height=float(prior.min[1]) if is_specific(prior) else None,
                  prior_surface=1.0 if prior is None or prior.surface is None else prior.surface)
    box = fit.box
    if (cfg.align_to_box and depth_kind != "dense" and not fit.round and not any(hidden3)
            and x0 > 1 and x1 < W - 1 and y0 > 1 and y1 < H - 1):
        box = _align_to_2d_box(box, o.bbox_xyxy, K, g, image_size, cfg)
    zq = quantiles(pts[:, 2], 10, 90)
    entry["box3d"] = box.to_omni3d()
    figures, reason = assess_box(box, o.bbox_xyxy, K, image_size, hidden3, prior, cfg)
    entry["quality"].update(
        {
            "proj_iou": figures["proj_iou"],
            "proj_iou_visible": figures["proj_iou_visible"],
            "depth_spread_m": round(float(zq[1] - zq[0]), 4),
            "visible_fraction": round(float(fit.visible_fraction), 4),
            "truncation": figures["truncation"],
            "round": fit.round,
            "bottom_hidden": hidden,
            "sides_hidden": list(sides),
            "completed": fit.completed,
            "prior": None if prior is None else prior.source,
        }
    )
    if (cfg.prior_fallback and figures["proj_iou_visible"] < cfg.refit_below_proj_iou and not any(hidden3)
            and reason in (None, "low_projected_iou")
            and is_specific(prior)):
        # the fit disagrees with the 2D box (smeared or noisy depth stretched the footprint
        # the wrong way): the category's box placed at the points' depth, oriented to fill
        # the 2D box, replaces it when it agrees clearly better (not when the observed size
        # contradicts the category: that stays a size rejection)
        alt = {"quality": {}}
        if _prior_box(o, K, g, floor, cfg, priors, image_size, alt, np.array([z_measured]), depth_kind) and \
                alt["quality"]["proj_iou"] > figures["proj_iou_visible"] + cfg.refit_min_gain:
            entry["box3d"] = alt["box3d"]
            entry["quality"] = {"n_points": entry["quality"]["n_points"], **alt["quality"]}
            return None
    return reason


def _smear_cap(prior, prior_dims, depth_kind: str, cfg: LiftConfig):
    """(3,) largest (w, h, l) the fit keeps along the view before it calls the rest smeared
    depth: the category's largest for a depth camera or LiDAR; for stereo and monocular
    depth, which interpolate between an object's edge and what lies behind it (a car's
    footprint seen end-on grows tails of 2-3 m), at most `smear_cap_typical` times its
    typical size. None without a specific prior."""
    if not is_specific(prior):
        return None
    cap = np.asarray(prior.max, float)
    if depth_kind in ("stereo", "model") and cfg.smear_cap_typical:
        cap = np.minimum(cap, cfg.smear_cap_typical * np.asarray(prior_dims, float))
    return cap


def _align_to_2d_box(box, bbox_xyxy, K, g, image_size, cfg: LiftConfig):
    """The fitted box turned about gravity (within `align_yaw_deg`) and slid across the view
    so that its projection fits the object's 2D box best, when that beats the fit's own
    projection by `align_min_gain` in IoU; its size and its distance along the view stay.

    For an object seen whole (no side hidden or cut) in sparse or noisy depth (LiDAR,
    stereo, a depth model), the tight 2D box pins its silhouette better than the few or
    smeared points pin its footprint: a car's rear seen by a few scan lines misleads the
    orientation, not the 2D box (the geometric constraint of Mousavian et al. 2017, used
    as a local refinement). A depth camera's dense points are trusted as they are.
    `side` is the horizontal direction across the view, pointing to the image's right."""
    from lifting.boxes import Box3D, gravity_frame

    b = tuple(float(v) for v in bbox_xyxy)
    base = iou_2d(project_box(box, K, image_size), b)
    R = gravity_frame(g)
    cg = box.center_cam @ R  # gravity frame: x right, y down, z forward
    dist = max(math.hypot(cg[0], cg[2]), 1e-9)  # horizontal distance, shared by every candidate
    side = np.array([cg[2], 0.0, -cg[0]]) / dist  # across the view
    best, best_iou = box, base
    step = cfg.align_yaw_deg / 4
    for k in range(-4, 5):
        cand = Box3D.from_gravity(box.center_cam, box.dimensions, box.yaw + math.radians(k * step), g)
        p = project_box(cand, K, image_size)
        if p is None:
            continue
        # slide across the view until the projection is centred on the 2D box
        # moving across the view by s at horizontal distance D shifts the image by fx s D / z^2
        z = float(cand.center_cam[2])
        shift = ((b[0] + b[2]) / 2 - (p[0] + p[2]) / 2) * z * z / (float(K[0, 0]) * dist)
        cand = Box3D(cand.center_cam + (side * shift) @ R.T, cand.dimensions, cand.R_cam, cand.yaw)
        v = iou_2d(project_box(cand, K, image_size), b)
        if v > best_iou:
            best, best_iou = cand, v
    return best if best_iou > base + cfg.align_min_gain else box


def _box_distance(box_h_px: float, K, prior_dims, camera_height: float | None) -> float:
    """Distance (metres) at which an object of the prior's height fills `box_h_px` rows.

    Seen from above (camera higher than the object's top, `camera_height` over the floor),
    the box height also spans the top face's depth: D = fy (h + drop * l / D) / box height,
    solved by a few fixed-point steps."""
    fy, ph = float(K[1, 1]), float(prior_dims[1])
    z_h = fy * ph / box_h_px
    if camera_height is not None and camera_height > ph:
        depth_l = 0.5 * (float(prior_dims[0]) + float(prior_dims[2]))
        for _ in range(3):
            z_h = fy * (ph + (camera_height - ph) * depth_l / z_h) / box_h_px
    return z_h


def _height_sigma(prior) -> float:
    """Log-space spread of a category's heights (its plausible range as about +-2.5 sigma)."""
    return min(max(math.log(max(float(prior.max[1]), 1e-3) / max(float(prior.min[1]), 1e-3)) / 5.0, 0.1), 0.5)


def _fuse_log(z_a: float, sigma_a: float, z_b: float, sigma_b: float) -> float:
    """Inverse-variance mean of two distances in log space (sigmas are relative errors)."""
    wa, wb = 1.0 / (sigma_a * sigma_a), 1.0 / (sigma_b * sigma_b)
    return math.exp((wa * math.log(z_a) + wb * math.log(z_b)) / (wa + wb))


def _fuse_depth(pts: np.ndarray, box_h_px: float, K, prior, prior_dims, depth_kind: str, cfg: LiftConfig,
                camera_height: float | None = None) -> float:
    """Factor correcting an object's depth by what its 2D box height says under its
    category's height prior (1.0 when the category has no specific prior).

    Two estimates of the object's distance, fused in log space by inverse variance: its
    points' median depth z_p (relative error sigma_p = a + b * z_p, a and b per kind of
    depth: `fuse_sigma_{dense,stereo,model,sparse}`: stereo and monocular models drift with
    range, depth cameras and LiDAR do not) and fy * h_prior / box height (relative error: the prior's
    log height spread). Indoors at a few metres the points win by orders of magnitude; a
    stereo car at 50 m or a monocular model's global scale error moves towards the prior.
    z_h comes from `_box_distance` (the top face seen from above included).
    """
    if not is_specific(prior) or box_h_px <= 1:
        return 1.0
    a, b = getattr(cfg, f"fuse_sigma_{depth_kind}")
    z_p = float(np.median(pts[:, 2]))
    if z_p <= 0:
        return 1.0
    z_h = _box_distance(box_h_px, K, prior_dims, camera_height)
    return _fuse_log(z_p, a + b * z_p, z_h, _height_sigma(prior)) / z_p


def assess_box(box, bbox_xyxy, K, image_size, hidden3: tuple, prior, cfg: LiftConfig) -> tuple[dict, str | None]:
    """The box-level filters of an object: ({proj_iou, proj_iou_visible, truncation}, reason or None).

    The same code judges a lifted box and, in the fidelity benchmark, a GT box (whose
    rejection rate says whether the filters are calibrated on real data).

    Args:
        box: Box3D (camera frame); bbox_xyxy: the source 2D box; K (3, 3); image_size (W, H).
        hidden3: (bottom, left, right) image edges of the object that are not observed
            (occluded or cut): there the box may rightly project beyond the 2D box.
        prior: the category's size prior (or None).
    """
    hidden, left, right = hidden3
    proj_full = project_box(box, K, None)
    proj = clip_box_2d(proj_full, image_size)  # = project_box(box, K, image_size), one projection
    b = tuple(bbox_xyxy)
    proj_iou = iou_2d(proj, b)
    # self-consistency on the observed sides only
    vis_iou = proj_iou
    if proj is not None and (hidden or left or right):
        p = [max(proj[0], b[0]) if left else proj[0], proj[1],
             min(proj[2], b[2]) if right else proj[2], min(proj[3], b[3]) if hidden else proj[3]]
        vis_iou = iou_2d(tuple(p), b) if p[2] > p[0] and p[3] > p[1] else 0.0
    area = lambda q: 0.0 if q is None else (q[2] - q[0]) * (q[3] - q[1])  # noqa: E731
    truncation = 1.0 - area(proj) / area(proj_full) if area(proj_full) > 0 else 1.0
    figures = {"proj_iou": round(float(proj_iou), 4), "proj_iou_visible": round(float(vis_iou), 4),
               "truncation": round(float(truncation), 4)}
    return figures, check_box(box, vis_iou, truncation, prior, cfg)


def _box_returns(o: Object2D, depth, valid, K, floor, cfg: LiftConfig, claimed=()) -> np.ndarray | None:
    """(N,) depths (metres) of the LiDAR returns in an object's 2D box that are not on the
    floor / road (`frustum.off_floor`) and not inside any of the 3D boxes `claimed` (Box3D:
    the objects already placed); None when there are none."""
    sl = box_slices(o.bbox_xyxy, depth.shape)
    if sl is None:
        return None
    vv, uu = np.nonzero(valid[sl])
    z = depth[sl][vv, uu].astype(np.float64)
    if floor is not None and len(z):
        from lifting.camera import unproject_points
        from lifting.lift.frustum import off_floor

        xyz = unproject_points(np.stack([uu + sl[1].start, vv + sl[0].start], axis=1), z, K)
        keep = off_floor(floor, xyz, cfg, sparse=True)
        for b in claimed:
            keep &= ~b.contains(xyz)
        z = z[keep]
    return z if len(z) else None


def _returns_distance(z: np.ndarray, z_geo: float, sigma_geo: float) -> float | None:
    """Distance of an object's near surface from the depths of the points seen in its 2D box
    (a few LiDAR returns, or a cluster), or None when none agree with the geometry.

    The depths are grouped along the ray (a gap of more than max(0.5 m, 2 %) splits: an
    occluder, the object, the background); each group within 2.5 sigma (log) of the
    geometric distance `z_geo` (box height / floor contact, relative error `sigma_geo`)
    scores its size times its Gaussian agreement with it, and the best one's 20th
    percentile (its near side) is returned."""
    z = np.sort(z[z > 0])
    if len(z) == 0:
        return None
    cuts = np.flatnonzero(np.diff(z) > np.maximum(0.5, 0.02 * z[:-1])) + 1
    best, best_score = None, 0.0
    for grp in np.split(z, cuts):
        zc = float(np.percentile(grp, 20))
        dev = math.log(zc / z_geo) / sigma_geo
        if abs(dev) > 2.5:
            continue
        score = len(grp) * math.exp(-0.5 * dev * dev)
        if score > best_score:
            best, best_score = zc, score
    return best


def _geo_distance(o: Object2D, K, floor, cfg: LiftConfig, priors, image_size) -> tuple[float, float, str] | None:
    """(distance z of the near face, metres; its relative error; how) of an object from its
    2D box alone: the distance at which the category's prior height fills the box height,
    fused by inverse variance (in log space) with where the box's bottom edge meets the
    floor when there is one and the two roughly agree (the floor contact's error grows with
    range: a small tilt of the plane, or a road that is not planar, moves a far contact a
    lot). None for a generic prior or a box cut at the top or bottom."""
    prior, dims = priors.dims(o.category)
    H = image_size[1]
    x0, y0, x1, y1 = (float(v) for v in o.bbox_xyxy)
    if not is_specific(prior) or y0 <= 1 or y1 >= H - 1:
        return None
    camera_height = None if floor is None else float(floor.offset)
    z_height = _box_distance(y1 - y0, K, dims, camera_height)
    sigma = _height_sigma(prior)
    if floor is not None:
        # ray through the bottom edge (edge coordinate e = pixel-centre coordinate e - 0.5)
        ray_b = np.linalg.solve(K, np.array([(x0 + x1) / 2 - 0.5, y1 - 0.5, 1.0]))
        z_floor = floor.contact(ray_b)
        if z_floor is not None:
            if abs(math.log(z_floor / z_height)) < 0.4:
                a, b = cfg.floor_contact_sigma
                s_f = a + b * z_floor / camera_height
                return (_fuse_log(z_floor, s_f, z_height, sigma), 1.0 / math.sqrt(1.0 / s_f ** 2 + 1.0 / sigma ** 2),
                        "floor_contact")
    return z_height, sigma, "box_height"


def _prior_box(o: Object2D, K, g, floor, cfg: LiftConfig, priors, image_size, entry: dict,
               z_hint: np.ndarray | None, depth_kind: str = "dense") -> bool:
    """Box of an object that depth barely sees (a far car with a few LiDAR returns, a dark
    or thin object): the category's typical size, standing where its 2D box says.

    Distance of the near face, along the ray through the 2D box centre: the geometry of
    the 2D box (`_geo_distance`: box height under the prior height, fused with the floor
    contact of its bottom edge), fused by inverse variance with the depths seen in the box
    when some agree with it (`z_hint`: (N,) depths, metres -- a cluster's, or all of a
    sparse box's returns off the road; `_returns_distance` picks the group along the ray
    that the geometry supports, so an occluder's or the background's returns are not
    taken for the object's; they are the visible surface, which lies `Prior.surface` of the
    half-depth in front of the centre: a car's near face, a person's torso). Only for a
    specific (non-generic) prior and a 2D box whose top and bottom are inside the image.
    Each yaw candidate is pushed back along the view by its own half-depth (a car end-on
    reaches 2.25 m behind its near face, side-on 0.9 m), and the one whose projection fills
    the 2D box best is kept. The object is kept when the box passes the same filters as any other
    (`quality.box_from` "size_prior", `quality.depth_from` saying which distance was used);
    returns whether it did (`entry` gets box3d and quality either way: callers pass a
    scratch dict and keep it only on success).
    """
    from lifting.boxes import Box3D, gravity_frame

    prior, dims = priors.dims(o.category)
    geo = _geo_distance(o, K, floor, cfg, priors, image_size)
    if geo is None:
        return False
    z, sigma_geo, how = geo
    x0, y0, x1, y1 = (float(v) for v in o.bbox_xyxy)
    pw, ph, pl = (float(v) for v in dims)
    # ray through the box centre: edge coordinate e is pixel-centre coordinate e - 0.5 (lifting.camera)
    ray_c = np.linalg.solve(K, np.array([(x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5, 1.0]))
    z_pts = None if z_hint is None else _returns_distance(np.asarray(z_hint, dtype=np.float64), z, sigma_geo)
    if z_pts is not None:
        how = "points"
    surface = SOLID_SURFACE if prior.surface is None else prior.surface
    R = gravity_frame(g)
    ray_g = ray_c @ R  # gravity frame: x right, y down, z forward
    horizontal = max(math.hypot(ray_g[0], ray_g[2]), 1e-9)
    view = np.array([ray_g[0], 0.0, ray_g[2]]) / horizontal  # horizontal ray
    ray_yaw = math.atan2(ray_g[0], ray_g[2])
    best = None
    for k in range(12):
        yaw = ray_yaw + k * math.pi / 12
        c, s_ = math.cos(yaw), math.sin(yaw)  # box x axis (c, 0, -s), z axis (s, 0, c): rot_y(yaw)
        half_depth = 0.5 * pw * abs(c * view[0] - s_ * view[2]) + 0.5 * pl * abs(s_ * view[0] + c * view[2])
        z_near = z
        if z_pts is not None:
            # a handful of returns that agree with the geometry: both, by inverse variance
            # (the returns moved from the visible surface to where the near face would be)
            a, b = getattr(cfg, f"fuse_sigma_{depth_kind}")
            z_face = max(z_pts - (1.0 - surface) * half_depth * ray_c[2] / horizontal, 0.5 * z_pts)
            z_near = _fuse_log(z_face, a + b * z_face, z, sigma_geo)
        if not (cfg.min_depth_m <= z_near <= cfg.max_depth_m):
            continue
        near = (ray_c * (z_near / ray_c[2])) @ R  # the near face's centre, gravity frame
        # standing on the floor: its plane, not the ground profile (measured on nuScenes, the
        # profile's far heights put these boxes lower than their GT: 0.219 -> 0.210)
        if floor is not None and abs(floor.offset - (near[1] + ph / 2)) < 0.5 * ph:
            near[1] = floor.offset - ph / 2
        cand = Box3D.from_gravity((near + view * half_depth) @ R.T, [pw, ph, pl], yaw, g)
        fill = iou_2d(project_box(cand, K, image_size), (x0, y0, x1, y1))
        if best is None or fill > best[0] + 1e-9:
            best = (fill, cand)
    if best is None:
        return False
    box = best[1]
    entry["box3d"] = box.to_omni3d()
    figures, reason = assess_box(box, o.bbox_xyxy, K, image_size, (False, False, False), prior, cfg)
    entry["quality"].update({**figures, "completed": True, "prior": prior.source, "box_from": "size_prior",
                             "depth_from": how})
    return reason is None

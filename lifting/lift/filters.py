"""Rule-based filters of the lifting core. Each only decides: it returns a reason code
from `lifting.lift.config.REASONS` or None (keep). Thresholds live in `LiftConfig`."""
from __future__ import annotations

import math

import numpy as np

from lifting.boxes import Box3D
from lifting.lift.config import LiftConfig


def check_pixels(pix: np.ndarray | None, valid_frac: float, measured_frac: float, cfg: LiftConfig) -> str | None:
    """Before back-projection: enough of the mask has in-range depth and something is left.

    `valid_frac`: mask pixels with depth in [min_depth_m, max_depth_m]; `measured_frac`: mask
    pixels with any depth (finite, > 0). Too few valid pixels is `depth_out_of_range` when
    the depth was measured but lies outside the range, else `depth_invalid`.
    """
    if pix is None:
        return "mask_empty"
    if cfg.min_valid_depth_frac is not None and valid_frac < cfg.min_valid_depth_frac:
        return "depth_out_of_range" if measured_frac >= cfg.min_valid_depth_frac else "depth_invalid"
    if not pix.any():
        return "too_few_points"
    return None


def is_specific(prior) -> bool:
    """Whether a size prior comes from a category's own table entry (not the generic
    fallback, which says nothing about the object)."""
    return prior is not None and getattr(prior, "source", "generic") != "generic"


def check_box(box: Box3D, proj_iou: float, truncation: float, prior, cfg: LiftConfig) -> str | None:
    """After fitting: size (absolute and against the prior), aspect, truncation, self-consistency."""
    # plain floats: a handful of comparisons, where numpy's per-call cost dominated
    w, h, l_ = (float(v) for v in box.dimensions)
    if not all(map(math.isfinite, (w, h, l_))):
        return "implausible_size"
    d_max, d_min = max(w, h, l_), min(w, h, l_)
    if cfg.min_size_m is not None and d_max < cfg.min_size_m:
        return "implausible_size"
    if cfg.max_size_m is not None and d_max > cfg.max_size_m:
        return "implausible_size"
    if cfg.prior_ratio is not None and is_specific(prior):
        r = cfg.prior_ratio
        size = (max(w, l_), h, min(w, l_))  # (long, height, short) like the prior's (w, h, l)
        if any(s < float(lo) / r or s > float(hi) * r for s, lo, hi in zip(size, prior.min, prior.max)):
            return "size_vs_prior"
    if cfg.max_aspect is not None and d_max / max(d_min, 1e-6) > cfg.max_aspect:
        return "degenerate_aspect"
    if cfg.max_truncation is not None and truncation > cfg.max_truncation:
        return "truncated"
    if cfg.min_proj_iou is not None and proj_iou < cfg.min_proj_iou:
        return "low_projected_iou"
    return None

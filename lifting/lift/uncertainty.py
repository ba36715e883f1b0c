"""1-sigma uncertainty of a lifted box, from what the lift knows about it.

Each kept object gets `quality.uncertainty`:

- `center_m`: the 68th percentile of its centre error (metres, Euclidean),
- `height_log` / `footprint_log`: the 68th percentile of |log(lifted / true)| of its height
  and of its horizontal sides,

from the kind of depth it was lifted from (`core._depth_kind`: a depth camera, LiDAR,
stereo, a monocular model) and whether its box was fitted to points or is the size prior
placed by the 2D box (`quality.box_from == "size_prior"`); the centre error grows with
distance. The table is calibrated on the real frames of ../shared/data/real3d
(bench/bench_real.py, boxes only, sensor depth): for each (kind, origin) the 68th
percentile of the measured errors, so that the stated 1-sigma holds for ~68 % of objects
(the benchmark reports the coverage it reaches). Monocular-model depth has no real frames
with GT here: its row is the stereo row widened by a 10 % global scale error (the typical
AbsRel of metric monocular models), which the depth-sensitivity table of BENCHMARKS.md
shows to dominate.

The QA engine turns these into per-question margins (lifting.qa: a comparison is asked
only when its difference exceeds the referenced objects' combined uncertainty).
"""
from __future__ import annotations

import math

#: (depth kind, "fit" | "size_prior") -> (centre error / distance, height |log| error,
#: footprint |log| error), 68th percentiles on the real dev set (session 4 of issue 18).
CALIBRATION: dict[tuple[str, str], tuple[float, float, float]] = {
    ("dense", "fit"): (0.11, 0.18, 0.30),
    ("dense", "size_prior"): (0.15, 0.18, 0.30),  # no real sample: the fitted row, centre widened
    ("sparse", "fit"): (0.035, 0.09, 0.21),
    ("sparse", "size_prior"): (0.07, 0.09, 0.26),
    ("stereo", "fit"): (0.065, 0.09, 0.35),
    ("stereo", "size_prior"): (0.075, 0.09, 0.26),
    ("model", "fit"): (0.12, 0.12, 0.35),
    ("model", "size_prior"): (0.13, 0.12, 0.30),
}
#: the least centre uncertainty stated (metres): annotation and calibration noise
CENTER_FLOOR_M = 0.05


def box_uncertainty(depth_kind: str, size_prior: bool, distance_m: float, disagreement: float = 0.0) -> dict:
    """{center_m, height_log, footprint_log} of a kept box (see the module docstring).

    Args:
        depth_kind: dense | sparse | stereo | model.
        size_prior: the box is the category's prior placed by the 2D box (not fitted).
        distance_m: camera distance of the box centre, metres.
        disagreement: how far (|log| ratio, beyond what the category's height spread
            explains) the box's distance is from where its 2D box and size prior put it
            (`core._geo_distance`): a gross failure -- the wrong cluster, the background --
            shows as a box at 3x the distance its 2D box says. It widens the centre and
            size uncertainties by as much.
    """
    rel, h, f = CALIBRATION.get((depth_kind, "size_prior" if size_prior else "fit"), CALIBRATION[("model", "fit")])
    r = max(float(distance_m), 0.0)
    dis = max(float(disagreement), 0.0)
    center = max(CENTER_FLOOR_M, math.hypot(rel, dis) * r)
    return {"center_m": round(center, 4), "height_log": round(math.hypot(h, dis), 4),
            "footprint_log": round(math.hypot(f, dis), 4)}


def combined(*sigmas: float) -> float:
    """Root sum of squares of independent 1-sigma errors."""
    return math.sqrt(sum(s * s for s in sigmas))

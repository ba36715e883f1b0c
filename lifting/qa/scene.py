"""Per-image geometry of the QA engine: kept objects in the gravity frame, relations,
margins, clock positions and referring expressions (definitions: docs/QA_FAMILIES.md).

Per-object quantities are plain Python floats: with ~10 objects per image, scalar Python
is several times faster than numpy's per-call overhead, which matters at >=1000 images/s.
"""
from __future__ import annotations

import math
import random

from lifting.bbox_text import format_bbox_fields
from lifting.boxes import wrap_angle
from lifting.qa.config import Margins, QAConfig

#: axis -> (relation when the signed difference is > 0, its opposite, margin kind)
AXES: dict[str, tuple[str, str, str]] = {
    "horizontal": ("left_of", "right_of", "position"),
    "depth": ("in_front_of", "behind", "position"),
    "vertical": ("above", "below", "position"),
    "volume": ("bigger", "smaller", "volume"),
    "height": ("taller", "shorter", "size"),
    "width": ("wider", "thinner", "size"),
}
OPPOSITE = {}
for _pos, _neg, _ in AXES.values():
    OPPOSITE[_pos], OPPOSITE[_neg] = _neg, _pos
#: egocentric relations of family viewpoint_object (viewer at A facing B, target C)
EGO_AXES = {"side": ("right", "left"), "ahead": ("ahead", "behind")}

CAMERA_VIEW = (0.0, 1.0)  # (f_x, f_z) horizontal viewing direction in the gravity frame
OPPOSITE_VIEW = (0.0, -1.0)


def gravity_frame_py(gravity_cam) -> list[list[float]]:
    """`lifting.boxes.gravity_frame` in scalar Python: (3, 3) nested lists, columns the
    gravity frame's x (right), y (down, along `gravity_cam`) and z (forward, horizontal)
    axes in the camera frame. The same construction; ~20x cheaper than numpy on 3-vectors
    (the QA engine builds one per image); equal to it within a few ulp."""
    gx, gy, gz = (float(v) for v in gravity_cam)
    n = math.sqrt(gx * gx + gy * gy + gz * gz)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError(f"gravity_cam must be a non-zero vector, got {gravity_cam}")
    y = (gx / n, gy / n, gz / n)
    d = y[2]  # fwd . y with fwd = (0, 0, 1)
    z = (-d * y[0], -d * y[1], 1.0 - d * y[2])
    if math.sqrt(z[0] * z[0] + z[1] * z[1] + z[2] * z[2]) < 1e-6:  # looking straight up or down
        alt = (0.0, 1.0, 0.0) if abs(y[1]) < 0.9 else (0.0, 0.0, -1.0)
        d = alt[0] * y[0] + alt[1] * y[1] + alt[2] * y[2]
        z = (alt[0] - d * y[0], alt[1] - d * y[1], alt[2] - d * y[2])
    nz = math.sqrt(z[0] * z[0] + z[1] * z[1] + z[2] * z[2])
    z = (z[0] / nz, z[1] / nz, z[2] / nz)
    x = (y[1] * z[2] - y[2] * z[1], y[2] * z[0] - y[0] * z[2], y[0] * z[1] - y[1] * z[0])
    return [[x[i], y[i], z[i]] for i in range(3)]


class Obj:
    """One kept object: gravity-frame centre (x right, y down, z forward; metres), extents
    w (width: the shorter horizontal side), h (along gravity), l (length: the longer
    horizontal side) in metres, volume V (m^3), camera distance r (metres).

    The box's own x / z axes are whatever the lifter chose (across / along the view for a
    fitted box); no viewer can tell them apart, so questions use the sorted sides."""

    __slots__ = ("oid", "category", "index", "box3d", "x", "y", "z", "w", "h", "l", "V", "r", "ref", "_bbox",
                 "sc", "sh", "sf")

    def __init__(self, oid, category, index, box3d, p, dims, uncertainty=None):
        self.oid, self.category, self.index, self.box3d = oid, category, index, box3d
        self.x, self.y, self.z = p
        sx, self.h, sz = dims
        self.w, self.l = (sx, sz) if sx <= sz else (sz, sx)
        self.V = self.w * self.h * self.l
        self.r = math.sqrt(self.x * self.x + self.y * self.y + self.z * self.z)
        self.ref = None  # (text, rule) when referable
        self._bbox = None
        # 1-sigma lifting errors (quality.uncertainty, lifting/lift/uncertainty.py): centre
        # (metres), height and footprint sides (|log| ratio); 0 when the record has none
        u = uncertainty or {}
        self.sc = float(u.get("center_m") or 0.0)
        self.sh = float(u.get("height_log") or 0.0)
        self.sf = float(u.get("footprint_log") or 0.0)


def separated(d: float, scale: float, abs_m: float, rel: float) -> bool:
    """True when the difference `d` is outside the margin: |d| >= abs_m and |d| >= rel*scale."""
    ad = abs(d)
    return ad >= abs_m and ad >= rel * scale


def margin_of(kind: str, m: Margins) -> tuple[float, float]:
    """(absolute, relative) margin of a comparison kind: position | size | volume | distance."""
    return {
        "position": (m.position_m, m.position_rel),
        "size": (m.size_m, m.size_rel),
        "volume": (m.volume_m3, m.size_rel),
        "distance": (m.distance_m, m.distance_rel),
    }[kind]


def view_coords(o_x: float, o_z: float, view: tuple[float, float]) -> tuple[float, float]:
    """(right, forward) coordinates of a horizontal gravity-frame vector (x, z) for a viewer
    looking along `view` = (f_x, f_z) (unit): right = rt.v with rt = (f_z, -f_x)."""
    fx, fz = view
    return fz * o_x - fx * o_z, fx * o_x + fz * o_z


def clock_hour(right: float, forward: float, clock_deg: float) -> tuple[int | None, float]:
    """Clock position (1..12) of a horizontal offset (right, forward) in metres, and its
    angle in degrees (clockwise from straight ahead). Hour None when within `clock_deg` of a
    half-hour boundary."""
    theta = math.degrees(math.atan2(right, forward))
    t = theta / 30.0
    frac = t - math.floor(t)
    if abs(frac - 0.5) < clock_deg / 30.0:
        return None, theta
    hour = int(round(t)) % 12
    return (12 if hour == 0 else hour), theta


class Scene:
    """The kept objects of one image record, ready for question generation.

    Args:
        record: image record dict (schemas/image_record.schema.json).
        config: QA configuration (margins, precision).
        rng: the image's seeded generator (used to pick among valid referring rules).
    """

    def __init__(self, record: dict, config: QAConfig, rng: random.Random):
        self.record = record
        self.config = config
        self.key = record["key"]
        self.K = [[float(v) for v in row] for row in record["K"]]  # (3, 3) nested floats
        self.size = (int(record["width"]), int(record["height"]))
        self.gravity = record.get("gravity_cam") or [0.0, 1.0, 0.0]
        self.G = gravity_frame_py(self.gravity)  # (3, 3) nested lists, columns x, y, z
        G = self.G
        self._gx = [G[0][0], G[1][0], G[2][0]]
        kept = [o for o in record.get("objects") or () if o.get("status") == "kept" and o.get("box3d")]
        self.objects: list[Obj] = []
        for i, o in enumerate(kept):
            cx, cy, cz = (float(v) for v in o["box3d"]["center_cam"])
            p = [cx * G[0][j] + cy * G[1][j] + cz * G[2][j] for j in range(3)]  # xyz_grav = xyz_cam @ G
            dims = [float(v) for v in o["box3d"]["dimensions"]]
            self.objects.append(Obj(str(o["object_id"]), str(o["category"]), i, o["box3d"], p, dims,
                                    (o.get("quality") or {}).get("uncertainty")))
        self.by_id = {o.oid: o for o in self.objects}
        self.categories: dict[str, list[Obj]] = {}
        for o in self.objects:
            self.categories.setdefault(o.category, []).append(o)
        # An object whose centre is not in front of the camera has no Bbox text: it is never
        # referenced, and detection/grounding skip the image (reason box_behind_camera).
        self.behind = {o.oid for o in self.objects if float(o.box3d["center_cam"][2]) <= 1e-3}
        self._assign_references(rng)
        self.referable = [o for o in self.objects if o.ref is not None and o.oid not in self.behind]

    # -- referring expressions ----------------------------------------------------------
    def _assign_references(self, rng: random.Random) -> None:
        for cat, group in self.categories.items():
            if len(group) == 1:
                group[0].ref = (f"the {cat}", "unique")
                continue
            rules: dict[str, list[str]] = {}
            for rule, key, kind in (("leftmost", lambda o: o.x, "position"), ("rightmost", lambda o: -o.x, "position"),
                                    ("nearest", lambda o: o.r, "distance"), ("farthest", lambda o: -o.r, "distance")):
                s = sorted(group, key=key)
                first, second = s[0], s[1]
                d = first.x - second.x if kind == "position" else first.r - second.r
                if self.is_separated(d, max(first.r, second.r), kind, math.hypot(first.sc, second.sc)):
                    rules.setdefault(first.oid, []).append(rule)
            for o in group:
                if o.oid in rules:
                    rule = rng.choice(rules[o.oid])
                    o.ref = (f"the {rule} {cat}", rule)

    def referring(self, objs) -> dict:
        """params.referring for the objects referenced by a question."""
        return {o.oid: {"text": o.ref[0], "rule": o.ref[1], "category": o.category} for o in objs}

    # -- boxes -----------------------------------------------------------------------
    def bbox(self, o: Obj) -> str:
        """The object's Bbox(...) text (lifting.bbox_text.format_bbox_fields, the scalar path of
        the single serialiser),
        with the yaw recovered about `gravity_cam` as Box3D.from_omni3d does."""
        if o._bbox is None:
            b = o.box3d
            R = b["R_cam"]
            gx = self._gx
            # yaw = atan2(Rg[0, 2], Rg[0, 0]) with Rg = G.T @ R (lifting.boxes.yaw_of), row 0 only
            s = gx[0] * R[0][2] + gx[1] * R[1][2] + gx[2] * R[2][2]
            c = gx[0] * R[0][0] + gx[1] * R[1][0] + gx[2] * R[2][0]
            o._bbox = format_bbox_fields(o.category, b["center_cam"], b["dimensions"], wrap_angle(math.atan2(s, c)),
                                         self.K, self.size, self.config.precision)
        return o._bbox

    # -- relations -------------------------------------------------------------------
    def axis_diff(self, axis: str, a: Obj, b: Obj, view=CAMERA_VIEW) -> tuple[float, float, str]:
        """Signed difference of `axis` for (a, b): > 0 means AXES[axis][0] holds for a vs b.

        Returns (difference, margin scale, margin kind). Positions use the viewer's (right,
        forward) directions `view` in the gravity frame; above/below uses gravity only.
        """
        if axis == "horizontal":
            d = view_coords(b.x - a.x, b.z - a.z, view)[0]
            return d, max(a.r, b.r), "position"
        if axis == "depth":
            d = view_coords(b.x - a.x, b.z - a.z, view)[1]
            return d, max(a.r, b.r), "position"
        if axis == "vertical":
            return b.y - a.y, max(a.r, b.r), "position"
        if axis == "volume":
            return a.V - b.V, max(a.V, b.V), "volume"
        if axis == "height":
            return a.h - b.h, max(a.h, b.h), "size"
        if axis == "width":
            return a.w - b.w, max(a.w, b.w), "size"
        raise KeyError(axis)

    def is_separated(self, d: float, scale: float, kind: str, sigma: float = 0.0) -> bool:
        """`separated` with the margins of `kind`, the absolute one raised to
        `margins.uncertainty_k` times `sigma` (the 1-sigma of d from the objects' lifting
        uncertainties, `uncertainty`)."""
        m = self.config.margins
        abs_m, rel = margin_of(kind, m)
        return separated(d, scale, max(abs_m, m.uncertainty_k * sigma), rel)

    def resolves(self, value: float, sigma: float) -> bool:
        """Whether a numeric answer `value` (metres) with 1-sigma `sigma` may be asked: at
        least `margins.numeric_min_m`, and `uncertainty_k` sigmas within
        `numeric_rel_sigma` of it."""
        m = self.config.margins
        return value >= m.numeric_min_m and m.uncertainty_k * sigma <= m.numeric_rel_sigma * value

    @staticmethod
    def uncertainty(axis: str, a: Obj, b: Obj) -> float:
        """1-sigma of `axis_diff(axis, a, b)` (or of a distance difference, axis "distance" /
        "camera_distance") from the two objects' lifting uncertainties, independent errors:
        metres for positions, distances and sizes, m^3 for volume."""
        if axis in ("horizontal", "depth", "vertical", "distance", "camera_distance"):
            return math.hypot(a.sc, b.sc)
        if axis == "height":
            return math.hypot(a.h * a.sh, b.h * b.sh)
        if axis == "width":
            return math.hypot(a.w * a.sf, b.w * b.sf)
        if axis == "volume":
            return math.hypot(a.V * math.hypot(a.sh, a.sf * math.sqrt(2.0)), b.V * math.hypot(b.sh, b.sf * math.sqrt(2.0)))
        raise KeyError(axis)

    @staticmethod
    def distance(a: Obj, b: Obj) -> float:
        """Centre-to-centre distance in metres."""
        return math.sqrt((a.x - b.x) ** 2 + (a.y - b.y) ** 2 + (a.z - b.z) ** 2)

    @staticmethod
    def horizontal_distance(a: Obj, b: Obj) -> float:
        """Distance between the centres projected on the horizontal plane, metres."""
        return math.hypot(a.x - b.x, a.z - b.z)

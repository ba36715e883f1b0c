"""Independent checker of the QA engine's answers (issue 7 acceptance test).

Written from docs/QA_FAMILIES.md, the schemas and lifting/boxes.py only, without reading
the engine (lifting/qa/*) or its own answer tests. For a few thousand generated questions
the checker resolves the referenced objects, recomputes every answer from the kept boxes
in the gravity frame and compares it with the engine's `answer.value` (exactly; numbers to
the stated rounding). It also checks referring expressions, margins, options, Bbox texts,
that rejected objects are never used, per-image caps and Yes/No and left/right balance.

Inputs: repository image records built from synthetic scenes with exact GT boxes
(`lifting.synthetic.generate_scene`) plus hand-made records with strongly tilted gravity,
repeated categories, near ties inside the margins and rejected objects (some of them
with a box, which must be ignored all the same).

The checker is hand-written on purpose: it must be a second implementation of the spec.
"""
from __future__ import annotations

import copy
import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from lifting.bbox_text import find_bboxes, format_bbox
from lifting.boxes import Box3D, gravity_frame, project_box, wrap_angle
from lifting.camera import K_from_fov
from lifting.qa import DEFAULT_FAMILIES, Margins, QAConfig, generate_qa
from lifting.resources import validation_error
from lifting.synthetic import SceneConfig, generate_scene

FT_PER_M = 3.280839895  # docs/QA_FAMILIES.md §4 (1 m = 3.280839895 ft)
W, H = 320, 240

OPPOSITE_REL = {
    "left_of": "right_of", "right_of": "left_of", "in_front_of": "behind", "behind": "in_front_of",
    "above": "below", "below": "above", "bigger": "smaller", "smaller": "bigger",
    "taller": "shorter", "shorter": "taller", "wider": "thinner", "thinner": "wider",
}
AXIS_RELATIONS = {
    "horizontal": {"left_of", "right_of"}, "vertical": {"above", "below"}, "depth": {"in_front_of", "behind"},
    "volume": {"bigger", "smaller"}, "height": {"taller", "shorter"}, "width": {"wider", "thinner"},
}
POSITION_RELATIONS = {"left_of", "right_of", "above", "below", "in_front_of", "behind"}
SIZE_RELATIONS = {"bigger", "smaller", "taller", "shorter", "wider", "thinner"}
EGO_AXES = {"side": {"left", "right"}, "ahead": {"ahead", "behind"}}
REFERRING_TEXT = {"unique": "the {}", "leftmost": "the leftmost {}", "rightmost": "the rightmost {}",
                  "nearest": "the nearest {}", "farthest": "the farthest {}"}
FORMS = {"yes_no", "choice", "open", "numeric", "boxes", "count"}


# ----------------------------------------------------------------------------- records
def _object(oid: str, category: str, box: Box3D | None, K, status: str = "kept", reason=None) -> dict:
    """Object dict (schemas/image_record.schema.json) of a camera-frame box (metres)."""
    bb = project_box(box, K, (W, H)) if box is not None else None
    return {"object_id": oid, "category": category, "bbox_xyxy": list(bb) if bb else [10.0, 10.0, 40.0, 40.0],
            "status": status, "reason": reason, "box3d": box.to_omni3d() if box is not None else None}


def _record(key: str, K: np.ndarray, gravity_cam, objects: list[dict]) -> dict:
    """Image record dict; K (3, 3) pixels, gravity_cam (3,) unit down in the camera frame."""
    return {"schema_version": 1, "key": key, "source": "synthetic", "image_id": key, "width": W, "height": H,
            "K": np.asarray(K).tolist(), "K_source": "dataset", "depth_source": "sensor",
            "gravity_cam": [float(v) for v in gravity_cam], "gravity_source": "dataset",
            "status": "lifted", "reason": None, "objects": objects}


def synthetic_record(seed: int) -> dict:
    """Record of a rendered synthetic scene: every GT box kept, plus rejected objects
    (no box, or a box that must be ignored) interleaved in record order."""
    scene = generate_scene(seed, SceneConfig(width=W, height=H))
    rng = np.random.default_rng(1000 + seed)
    objs = []
    for i, ob in enumerate(scene.objects):
        o = _object(f"s{seed}o{i}", ob.category, ob.box, scene.K)
        if ob.bbox_xyxy is not None:
            o["bbox_xyxy"] = [float(v) for v in ob.bbox_xyxy]
        objs.append(o)
        if rng.random() < 0.5:  # rejected without a box, same category as a kept one
            objs.append(_object(f"s{seed}r{i}", ob.category, None, scene.K, "rejected", "too_few_points"))
    # a rejected object WITH a box right next to a kept one (as if dropped by a quality filter)
    near = scene.objects[0].box
    ghost = Box3D(near.center_cam + np.array([0.3, 0.0, 0.2]), near.dimensions, near.R_cam, near.yaw)
    objs.insert(1, _object(f"s{seed}ghost", scene.objects[0].category, ghost, scene.K, "rejected", "low_proj_iou"))
    return _record(f"syn{seed}", scene.K, scene.gravity_cam, objs)


def _tilted_gravity(pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Unit down vector (3,) in the camera frame for a camera pitched down and rolled."""
    p, r = -math.radians(pitch_deg), math.radians(roll_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    g = (rx @ rz).T @ np.array([0.0, 1.0, 0.0])
    return g / np.linalg.norm(g)


def _grav_box(p_grav, dims, yaw, g) -> Box3D:
    """Box from a gravity-frame centre (3,) metres (x right, y down, z forward)."""
    G = gravity_frame(g)
    return Box3D.from_gravity(np.asarray(p_grav, float) @ G.T, dims, yaw, g)


def hand_record(seed: int) -> dict:
    """Hand-made stress record: tilted gravity, few categories (so duplicates), and
    pairs placed just inside / just outside the position, size, volume and distance margins."""
    rng = np.random.default_rng(seed)
    g = _tilted_gravity(rng.uniform(-10, 35), rng.uniform(-25, 25))
    K = K_from_fov(W, H, float(rng.uniform(55, 80)))
    cats = ["chair", "chair", "chair", "cup", "cup", "lamp", "table", "shelf"]
    objs = []
    base = np.array([rng.uniform(-1.0, 1.0), rng.uniform(0.3, 1.0), rng.uniform(2.5, 4.0)])
    n = int(rng.integers(5, 10))
    k = 0
    while len([o for o in objs if o["status"] == "kept"]) < n and k < 40:
        k += 1
        mode = rng.integers(4)
        if mode == 0 or not objs:  # free position
            p = np.array([rng.uniform(-2.0, 2.0), rng.uniform(-0.2, 1.2), rng.uniform(1.5, 6.0)])
        else:  # near tie with the base object along one axis: offset just around 0.15 m
            off = np.zeros(3)
            off[int(rng.integers(3))] = rng.choice([-1, 1]) * rng.uniform(0.10, 0.22)
            off += rng.normal(0, 0.01, 3)
            p = base + off * (1 + mode)
        dims = np.array([rng.uniform(0.2, 1.2), rng.uniform(0.2, 1.2), rng.uniform(0.2, 1.2)])
        if rng.random() < 0.4:  # near-equal size to an earlier kept object
            prev = [o for o in objs if o["box3d"] is not None]
            if prev:
                dims = np.asarray(prev[int(rng.integers(len(prev)))]["box3d"]["dimensions"]) + rng.normal(0, 0.03, 3)
                dims = np.clip(dims, 0.05, None)
        box = _grav_box(p, dims, float(rng.uniform(-math.pi, math.pi)), g)
        if box.center_cam[2] < 0.8:
            continue
        cat = cats[int(rng.integers(len(cats)))]
        objs.append(_object(f"h{seed}o{k}", cat, box, K))
        if rng.random() < 0.3:
            objs.append(_object(f"h{seed}r{k}", cat, None, K, "rejected", "too_few_points"))
    return _record(f"hand{seed}", K, g, objs)


def fixed_records() -> list[dict]:
    """A few fully hand-placed records (gravity-frame positions, metres)."""
    out = []
    K = K_from_fov(W, H, 65.0)

    def mk(key, items, rejected=(), g=_tilted_gravity(30.0, 15.0)):
        objs = [_object(f"{key}_{i}", c, _grav_box(p, d, yaw, g), K) for i, (c, p, d, yaw) in enumerate(items)]
        for j, (c, p) in enumerate(rejected):
            box = _grav_box(p, [0.4, 0.4, 0.4], 0.0, g) if p is not None else None
            objs.insert(j, _object(f"{key}_rej{j}", c, box, K, "rejected", "too_few_points"))
        return _record(key, K, g, objs)

    # three chairs in a row: leftmost/rightmost separable, middle one not referable;
    # two cups 0.10 m apart (inside every margin): never referable; a unique lamp and table
    out.append(mk("row", [
        ("chair", [-1.2, 1.0, 3.0], [0.5, 0.9, 0.5], 0.3),
        ("chair", [0.0, 1.0, 3.05], [0.5, 0.9, 0.5], 0.1),
        ("chair", [1.1, 1.0, 3.2], [0.52, 0.92, 0.5], -0.4),
        ("cup", [0.4, 0.6, 2.5], [0.1, 0.12, 0.1], 0.0),
        ("cup", [0.5, 0.6, 2.52], [0.1, 0.12, 0.1], 0.0),
        ("lamp", [-0.5, 0.2, 4.5], [0.3, 1.6, 0.3], 0.0),
        ("table", [0.6, 1.1, 4.6], [1.2, 0.75, 0.8], 0.7),
    ], rejected=[("lamp", [-0.5, 0.2, 2.0]), ("chair", None)]))
    # two sofas at the same x, different depths: only nearest/farthest can refer to them;
    # near-equal heights / widths / volumes across categories
    out.append(mk("depth", [
        ("sofa", [0.0, 1.0, 2.2], [1.8, 0.8, 0.9], 0.0),
        ("sofa", [0.05, 1.0, 5.0], [1.8, 0.82, 0.9], 0.2),
        ("box", [-1.0, 1.3, 3.0], [0.40, 0.40, 0.40], 0.5),
        ("ball", [-0.86, 1.3, 3.1], [0.42, 0.42, 0.42], 0.0),
        ("plant", [1.2, 1.0, 3.5], [0.42, 0.9, 0.42], 1.0),
        ("tv", [1.0, 0.2, 6.0], [1.2, 0.7, 0.1], 3.1),
    ]))
    # a cluster around an anchor at nearly equal distances (count radius and extremes
    # must avoid them), one object straight ahead of another at a clock boundary
    out.append(mk("cluster", [
        ("bottle", [0.0, 1.0, 3.0], [0.1, 0.3, 0.1], 0.0),
        ("mug", [0.99, 1.0, 3.0], [0.1, 0.1, 0.1], 0.0),
        ("bowl", [-1.0, 1.0, 3.0], [0.2, 0.1, 0.2], 0.0),
        ("book", [0.0, 1.0, 4.02], [0.2, 0.05, 0.3], 0.0),
        ("phone", [0.0, 1.0, 1.99], [0.07, 0.01, 0.15], 0.0),
        ("laptop", [2.0, 0.9, 5.0], [0.35, 0.03, 0.25], 0.0),
        ("vase", [3.0, 0.9, 3.0 + 3.0 * math.tan(math.radians(15.0))], [0.2, 0.4, 0.2], 0.0),
    ]))
    # a camera looking steeply down (pitch 70 degrees) at objects on the floor 1.5 m below
    out.append(mk("topdown", [
        ("plate", [-0.3, 1.45, 0.8], [0.25, 0.03, 0.25], 0.0),
        ("plate", [0.35, 1.45, 0.85], [0.25, 0.03, 0.25], 0.4),
        ("shoe", [0.0, 1.44, 0.3], [0.12, 0.1, 0.3], 1.2),
        ("rug", [0.1, 1.49, 1.2], [1.6, 0.02, 1.0], 0.1),
        ("box", [-0.6, 1.3, 1.4], [0.4, 0.4, 0.4], -0.7),
    ], g=_tilted_gravity(70.0, 5.0)))
    return out


# ----------------------------------------------------------------------------- checker
@dataclass
class Obj:
    """One kept object in the gravity frame: p (3,) metres (x right, y down, z forward)."""

    oid: str
    category: str
    index: int  # position in record order among kept objects
    p: np.ndarray
    r: float  # camera distance |c_cam|, metres
    w: float  # width: the shorter horizontal side (§1)
    h: float
    l: float  # length: the longer horizontal side
    V: float  # m³
    box3d: dict


class Ctx:
    """A record prepared for checking (kept objects, rejected ids, gravity frame)."""

    def __init__(self, record: dict, config: QAConfig):
        self.record, self.config = record, config
        self.g = np.asarray(record["gravity_cam"], float)
        self.G = gravity_frame(self.g)
        self.K = np.asarray(record["K"], float)
        self.size = (record["width"], record["height"])
        self.kept: list[str] = []
        self.obj: dict[str, Obj] = {}
        self.rejected: set[str] = set()
        self._bbox: dict[str, str] = {}
        for o in record["objects"]:
            if o["status"] != "kept" or o["box3d"] is None:
                self.rejected.add(o["object_id"])
                continue
            c = np.asarray(o["box3d"]["center_cam"], float)
            sx, h, sz = (float(v) for v in o["box3d"]["dimensions"])
            w, l = min(sx, sz), max(sx, sz)  # §1: width / length = shorter / longer horizontal side
            self.obj[o["object_id"]] = Obj(o["object_id"], o["category"], len(self.kept), c @ self.G,
                                           float(np.linalg.norm(c)), w, h, l, w * h * l, o["box3d"])
            self.kept.append(o["object_id"])

    def bbox_text(self, oid: str) -> str:
        """Expected ``Bbox(...)`` of a kept object (§4 boxes), cached."""
        if oid not in self._bbox:
            o = self.obj[oid]
            self._bbox[oid] = format_bbox(o.category, Box3D.from_omni3d(o.box3d, self.g), self.K, self.size)
        return self._bbox[oid]

    def same_category(self, cat: str) -> list[Obj]:
        return [self.obj[k] for k in self.kept if self.obj[k].category == cat]


class Mismatch(Exception):
    """The checker disagrees with the engine (message says on what)."""


def expect(cond: bool, what: str, mine, engine):
    if not cond:
        raise Mismatch(f"{what}: checker={mine!r} engine={engine!r}")


def separated(d: float, scale: float, abs_m: float, rel: float) -> bool:
    """docs/QA_FAMILIES.md §1: |d| >= abs_m and |d| >= rel * scale."""
    return abs(d) >= abs_m and abs(d) >= rel * scale


def viewpoint_axes(vp: dict, ctx: Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, f, rt) of a viewpoint spec, gravity frame (§1)."""
    t = vp["type"]
    if t == "camera":
        f, o = np.array([0.0, 0.0, 1.0]), np.zeros(3)
    elif t == "opposite":
        f, o = np.array([0.0, 0.0, -1.0]), np.zeros(3)
    elif t == "object_camera_forward":
        f, o = np.array([0.0, 0.0, 1.0]), ctx.obj[vp["at"]].p
    elif t == "object":
        a, b = ctx.obj[vp["at"]].p, ctx.obj[vp["facing"]].p
        hv = (b - a) * np.array([1.0, 0.0, 1.0])
        n = float(np.linalg.norm(hv))
        expect(n >= ctx.config.margins.position_m, "object viewpoint horizontal length >= position_m",
               n, vp)
        f, o = hv / n, a
    else:
        raise Mismatch(f"unknown viewpoint type {t!r}")
    rt = np.array([f[2], 0.0, -f[0]])
    return o, f, rt


def relation(rel: str, a: Obj, b: Obj, f: np.ndarray, rt: np.ndarray, m: Margins) -> tuple[bool, bool, float]:
    """(truth of 'A is rel B', separated by its margin, difference) per §3."""
    d = b.p - a.p
    if rel in ("left_of", "right_of", "in_front_of", "behind", "above", "below"):
        diff = {"left_of": rt @ d, "right_of": rt @ d, "in_front_of": f @ d, "behind": f @ d,
                "above": d[1], "below": d[1]}[rel]
        sep = separated(diff, max(a.r, b.r), m.position_m, m.position_rel)
        truth = diff > 0 if rel in ("left_of", "in_front_of", "above") else diff < 0
    elif rel in ("bigger", "smaller"):
        diff = a.V - b.V
        sep = separated(diff, max(a.V, b.V), m.volume_m3, m.size_rel)
        truth = diff > 0 if rel == "bigger" else diff < 0
    elif rel in ("taller", "shorter"):
        diff = a.h - b.h
        sep = separated(diff, max(a.h, b.h), m.size_m, m.size_rel)
        truth = diff > 0 if rel == "taller" else diff < 0
    elif rel in ("wider", "thinner"):
        diff = a.w - b.w
        sep = separated(diff, max(a.w, b.w), m.size_m, m.size_rel)
        truth = diff > 0 if rel == "wider" else diff < 0
    else:
        raise Mismatch(f"unknown relation {rel!r}")
    return bool(truth), bool(sep), float(diff)


def egocentric(rel: str, a: Obj, c: Obj, o: np.ndarray, f: np.ndarray, rt: np.ndarray, m: Margins):
    """(truth, separated, difference) of the egocentric relation of C for a viewer at A (§3)."""
    e = c.p - o
    if rel in ("left", "right"):
        diff = float(rt @ e)
        truth = diff < 0 if rel == "left" else diff > 0
    elif rel in ("ahead", "behind"):
        diff = float(f @ e)
        truth = diff > 0 if rel == "ahead" else diff < 0
    else:
        raise Mismatch(f"unknown egocentric relation {rel!r}")
    return bool(truth), separated(diff, max(a.r, c.r), m.position_m, m.position_rel), diff


def clock_hour(target: Obj, o, f, rt, m: Margins) -> int:
    """Clock hour 1..12 of target seen from origin o facing f (§5 direction_clock); raises
    Mismatch when the spec says the question must not be asked."""
    e = target.p - o
    a, b = float(rt @ e), float(f @ e)
    expect(math.hypot(a, b) >= m.position_m, "clock: horizontal length >= position_m", math.hypot(a, b), None)
    theta = math.degrees(math.atan2(a, b))
    t = theta / 30.0
    frac = t - math.floor(t)
    expect(abs(frac - 0.5) >= m.clock_deg / 30.0, "clock: theta/30 away from a half-integer", t, None)
    hour = round(t) % 12
    return 12 if hour == 0 else hour


def check_referring(q: dict, ctx: Ctx):
    """§2: every referenced object has a valid, correctly worded referring entry."""
    m = ctx.config.margins
    ref = q["params"]["referring"]
    expect(set(ref) == set(q["object_ids"]), "referring keys == object_ids", sorted(q["object_ids"]), sorted(ref))
    for oid, entry in ref.items():
        ob = ctx.obj[oid]
        rule = entry["rule"]
        expect(entry["category"] == ob.category, f"referring category of {oid}", ob.category, entry["category"])
        expect(rule in REFERRING_TEXT, "referring rule", list(REFERRING_TEXT), rule)
        expect(entry["text"] == REFERRING_TEXT[rule].format(ob.category), f"referring text of {oid}",
               REFERRING_TEXT[rule].format(ob.category), entry["text"])
        text = entry["text"]
        if not (q["family"] == "multi_extreme" and q["form"] == "open" and oid == q["object_ids"][-1]):
            # (the answer of an open extreme question is named in the answer only)
            expect(text in q["question"] or text[:1].upper() + text[1:] in q["question"],
                   f"referring text of {oid} in the question", text, q["question"])
        same = ctx.same_category(ob.category)
        if rule == "unique":
            expect(len(same) == 1, f"{oid} unique in its category", len(same), rule)
            continue
        expect(len(same) >= 2, f"{oid} rule {rule} needs >= 2 of its category", len(same), rule)
        key = (lambda o: o.p[0]) if rule in ("leftmost", "rightmost") else (lambda o: o.r)
        order = sorted(same, key=key, reverse=rule in ("rightmost", "farthest"))
        expect(order[0].oid == oid, f"{oid} is the {rule} {ob.category}", order[0].oid, oid)
        run = order[1]
        if rule in ("leftmost", "rightmost"):
            ok = separated(run.p[0] - ob.p[0], max(ob.r, run.r), m.position_m, m.position_rel)
        else:
            ok = separated(run.r - ob.r, max(ob.r, run.r), m.distance_m, m.distance_rel)
        expect(ok, f"{oid} {rule} separated from runner-up {run.oid}", False, True)


def _mentions(text: str, answer_text: str) -> bool:
    return text.lower() in answer_text.lower()


def check_bboxes(q: dict, ctx: Ctx, ids: list[str]):
    """§4 boxes: value = format_bbox of the listed objects, and the parsed numbers equal the
    boxes (gravity-frame yaw, projected centre) at the printed precision."""
    expect(q["object_ids"] == ids, "listed object ids (record order)", ids, q["object_ids"])
    want = [ctx.bbox_text(i) for i in ids]
    expect(q["answer"]["value"] == want, "Bbox strings", want, q["answer"]["value"])
    parsed = find_bboxes(" ".join(q["answer"]["value"]))
    expect(len(parsed) == len(ids), "number of parsed Bbox", len(ids), len(parsed))
    expect(find_bboxes(q["answer_text"]) == parsed, "answer_text Bbox == value Bbox", parsed, q["answer_text"])
    fx, fy, cx, cy = ctx.K[0, 0], ctx.K[1, 1], ctx.K[0, 2], ctx.K[1, 2]
    for oid, b in zip(ids, parsed):
        o = ctx.obj[oid]
        c = np.asarray(o.box3d["center_cam"], float)
        u = (fx * c[0] / c[2] + cx + 0.5) / ctx.size[0]
        v = (fy * c[1] / c[2] + cy + 0.5) / ctx.size[1]
        Rg = ctx.G.T @ np.asarray(o.box3d["R_cam"], float)
        yaw = math.atan2(Rg[0, 2], Rg[0, 0])
        expect(b.category == o.category, "Bbox class", o.category, b.category)
        for name, mine, printed, half in (("u", u, b.u, 0.5e-3), ("v", v, b.v, 0.5e-3), ("z", c[2], b.z, 0.005),
                                          ("sx", o.box3d["dimensions"][0], b.sx, 0.005), ("sy", o.h, b.sy, 0.005),
                                          ("sz", o.box3d["dimensions"][2], b.sz, 0.005)):
            expect(abs(mine - printed) <= half + 1e-9, f"Bbox {name} of {oid}", mine, printed)
        expect(abs(wrap_angle(yaw - b.angle)) <= 0.005 + 1e-9, f"Bbox angle of {oid}", yaw, b.angle)


def check_numeric(q: dict, ctx: Ctx, raw_m: float):
    """§4 numeric: raw metres converted to the unit and rounded to params.decimals."""
    d = q["params"]["decimals"]
    unit = "m" if ctx.config.units == "metric" else "ft"
    val = raw_m * (1.0 if unit == "m" else FT_PER_M)
    got = q["answer"]["value"]
    expect(q["answer"]["unit"] == unit, "numeric unit", unit, q["answer"]["unit"])
    expect(isinstance(got, (int, float)) and not isinstance(got, bool), "numeric type", "number", got)
    expect(abs(got - round(got, d)) <= 1e-9, "value at the stated rounding", round(got, d), got)
    expect(abs(val - got) <= 0.5 * 10 ** -d + 1e-9, f"numeric value ({q['params'].get('quantity')})",
           round(val, d), got)
    expect(f"{got:.{d}f}" in q["answer_text"], "numeric answer_text", f"{got:.{d}f}", q["answer_text"])


def check_relation_family(q: dict, ctx: Ctx, vp_default: str):
    """relation_position / relation_size / viewpoint_opposite (§5)."""
    p, m, form = q["params"], ctx.config.margins, q["form"]
    vp = p.get("viewpoint", {"type": vp_default})
    expect(vp["type"] == vp_default, "viewpoint", vp_default, vp)
    _, f, rt = viewpoint_axes(vp, ctx)
    allowed = SIZE_RELATIONS if q["family"] == "relation_size" else POSITION_RELATIONS
    ids = q["object_ids"]
    expect(len(ids) == 2 and ids[0] != ids[1], "pair [A, B]", 2, ids)
    a, b = ctx.obj[ids[0]], ctx.obj[ids[1]]
    if form == "yes_no":
        rel = p["relation"]
        expect(rel in allowed, "relation allowed for the family", sorted(allowed), rel)
        if "axis" in p:
            expect(rel in AXIS_RELATIONS[p["axis"]], "axis matches relation", p["axis"], rel)
        truth, sep, diff = relation(rel, a, b, f, rt, m)
        expect(sep, f"{rel} separated", diff, "asked")
        expect(q["answer"]["value"] is truth, f"yes_no {rel}", truth, q["answer"]["value"])
        expect(q["answer_text"] == ("Yes" if truth else "No"), "yes_no answer_text", truth, q["answer_text"])
    elif form == "choice" and p["choice_kind"] == "relation":
        pair = AXIS_RELATIONS[p["axis"]]
        expect(pair <= allowed, "axis allowed for the family", sorted(allowed), p["axis"])
        expect(len(p["options"]) == 2 and set(p["options"]) == pair, "options = opposite pair", sorted(pair),
               p["options"])
        expect(len(p["options_text"]) == 2, "options_text per option", 2, p["options_text"])
        rel0 = p["options"][0]
        truth, sep, diff = relation(rel0, a, b, f, rt, m)
        want = rel0 if truth else OPPOSITE_REL[rel0]
        expect(sep, f"{p['axis']} separated", diff, "asked")
        expect(q["answer"]["value"] == want, f"choice relation ({p['axis']})", want, q["answer"]["value"])
    elif form == "choice" and p["choice_kind"] == "object":
        rel = p["relation"]
        expect(rel in allowed, "relation allowed for the family", sorted(allowed), rel)
        expect(p["options"] == ids, "options == object_ids", ids, p["options"])
        truth, sep, diff = relation(rel, a, b, f, rt, m)
        expect(sep, f"{rel} separated", diff, "asked")
        want = ids[0] if truth else ids[1]
        expect(q["answer"]["value"] == want, f"choice object ({rel})", want, q["answer"]["value"])
        expect(p["options_text"] == [p["referring"][i]["text"] for i in ids], "options_text = referring texts",
               [p["referring"][i]["text"] for i in ids], p["options_text"])
        expect(_mentions(p["referring"][want]["text"], q["answer_text"]), "answer_text names the answer",
               p["referring"][want]["text"], q["answer_text"])
    else:
        raise Mismatch(f"unexpected form {form!r}/{p.get('choice_kind')!r} for {q['family']}")


def check_question(q: dict, ctx: Ctx):
    """Raise Mismatch unless the question agrees with docs/QA_FAMILIES.md."""
    fam, form, p, m = q["family"], q["form"], q["params"], ctx.config.margins
    cfg = ctx.config
    expect(fam in DEFAULT_FAMILIES and cfg.families.get(fam, 0) > 0, "family enabled", sorted(cfg.families), fam)
    expect(form in FORMS, "form", sorted(FORMS), form)
    expect(re.fullmatch(rf"{re.escape(fam)}\.{re.escape(p['variant'])}\.\d+", q["template_id"]) is not None,
           "template_id = <family>.<variant>.<n>", f"{fam}.{p['variant']}.N", q["template_id"])
    expect(p["margins"] == {k: getattr(m, k) for k in p["margins"]} and set(p["margins"]) == set(vars(m)),
           "params.margins", vars(m), p["margins"])
    expect(p["units"] == cfg.units and p["decimals"] == cfg.decimals, "params units/decimals",
           (cfg.units, cfg.decimals), (p["units"], p["decimals"]))
    ids = q["object_ids"]
    bad = [i for i in ids if i not in ctx.obj]
    expect(not bad, "object_ids are kept objects (never rejected)", [], bad)
    expect(len(set(ids)) == len(ids), "object_ids distinct", "distinct", ids)
    used = set(ids) | set(p.get("referring", {})) | set(x for x in p.get("options", []) if isinstance(x, str))
    expect(not (used & ctx.rejected), "no rejected id referenced", [], sorted(used & ctx.rejected))
    val = q["answer"]["value"]
    if form not in ("numeric",) and not (form == "open" and isinstance(val, int) and not isinstance(val, bool)):
        expect(q["answer"].get("unit") is None, "unit of a non-numeric answer", None, q["answer"].get("unit"))

    if fam in ("detection", "grounding"):
        expect(form == "boxes", "form", "boxes", form)
        expect(p["referring"] == {}, "no referring for box lists", {}, p["referring"])
        if fam == "detection":
            check_bboxes(q, ctx, list(ctx.kept))
        else:
            cat = p["category"]
            ids_c = [o.oid for o in ctx.same_category(cat)]
            expect(bool(ids_c), "grounded category present among kept objects", "present", cat)
            check_bboxes(q, ctx, ids_c)
        return

    check_referring(q, ctx)
    if cfg.cot:  # §6: the reasoning first grounds every referenced object with its Bbox text
        got = [(b.category, b) for b in find_bboxes(q["reasoning"] or "")]
        for i in ids:
            want = find_bboxes(ctx.bbox_text(i))[0]
            expect(any(b == want for _, b in got), f"reasoning grounds {i}", want.to_text(), q["reasoning"])

    if fam == "relation_position":
        check_relation_family(q, ctx, "camera")
    elif fam == "relation_size":
        check_relation_family(q, ctx, "camera")
    elif fam == "viewpoint_opposite":
        check_relation_family(q, ctx, "opposite")
    elif fam == "metric_distance":
        expect(form == "numeric" and len(ids) == 2, "numeric pair", 2, ids)
        a, b = ctx.obj[ids[0]].p, ctx.obj[ids[1]].p
        d = b - a
        raw = {"center_distance": float(np.linalg.norm(d)), "horizontal_distance": math.hypot(d[0], d[2]),
               "vertical_distance": abs(float(d[1]))}[p["quantity"]]
        expect(raw >= m.numeric_min_m, "numeric value below numeric_min_m", raw, q["answer"])
        check_numeric(q, ctx, raw)
    elif fam == "metric_object":
        expect(form == "numeric" and len(ids) == 1, "numeric single", 1, ids)
        o = ctx.obj[ids[0]]
        raw = {"width": o.w, "height": o.h, "length": o.l, "camera_distance": o.r}[p["quantity"]]
        expect(raw >= m.numeric_min_m, "numeric value below numeric_min_m", raw, q["answer"])
        check_numeric(q, ctx, raw)
    elif fam == "direction_clock":
        vp = p["viewpoint"]
        if vp["type"] == "camera":
            expect(len(ids) == 1, "object_ids [B]", 1, ids)
        else:
            expect(vp["type"] == "object_camera_forward" and ids[0] == vp["at"] and len(ids) == 2,
                   "object_ids [A, B] with viewpoint at A", ids, vp)
        o, f, rt = viewpoint_axes(vp, ctx)
        want = clock_hour(ctx.obj[ids[-1]], o, f, rt, m)
        expect(form == "open" and q["answer"]["unit"] == "o'clock", "clock form/unit", "o'clock", q["answer"])
        expect(val == want and type(val) is int, "clock hour", want, val)
        expect(f"{want} o'clock" in q["answer_text"], "clock answer_text", f"{want} o'clock", q["answer_text"])
    elif fam == "multi_order":
        expect(form == "open" and len(ids) in (3, 4), "3 or 4 objects", "3-4", ids)
        crit = p["criterion"]
        key = {"camera_distance": lambda o: o.r, "volume": lambda o: o.V, "height": lambda o: o.h}[crit]
        objs = sorted((ctx.obj[i] for i in ids), key=key, reverse=p["direction"] == "descending")
        expect(p["direction"] in ("ascending", "descending"), "direction", "asc/desc", p["direction"])
        for x, y in zip(objs, objs[1:]):
            dk, sk = key(x), key(y)
            ok = {"camera_distance": lambda: separated(dk - sk, max(dk, sk), m.distance_m, m.distance_rel),
                  "volume": lambda: separated(dk - sk, max(dk, sk), m.volume_m3, m.size_rel),
                  "height": lambda: separated(dk - sk, max(dk, sk), m.size_m, m.size_rel)}[crit]()
            expect(ok, f"order by {crit}: adjacent pair separated", (x.oid, dk, y.oid, sk), "asked")
        want = [o.oid for o in objs]
        expect(val == want, f"order by {crit} {p['direction']}", want, val)
        pos, last = [], -1
        for i in want:  # the answer text lists the objects in that order
            k = q["answer_text"].lower().find(p["referring"][i]["text"].lower(), last + 1)
            pos.append(k)
            last = max(k, last)
        expect(all(k >= 0 for k in pos) and pos == sorted(pos), "answer_text order", want, q["answer_text"])
    elif fam == "multi_extreme":
        X = p["anchor"]
        expect(ids[0] == X, "object_ids start with the anchor", X, ids)
        ext = p["extreme"]
        expect(ext in ("nearest", "farthest"), "extreme", "nearest/farthest", ext)
        if form == "choice":
            expect(p["choice_kind"] == "object" and len(p["options"]) == 3 and ids == [X] + p["options"],
                   "object_ids = [X] + 3 options", [X] + p["options"], ids)
            cands = p["options"]
            expect(p["options_text"] == [p["referring"][i]["text"] for i in cands], "options_text",
                   [p["referring"][i]["text"] for i in cands], p["options_text"])
        else:
            expect(form == "open" and len(ids) == 2, "object_ids = [X, answer]", 2, ids)
            cands = [k for k in ctx.kept if k != X]
        dist = sorted(((float(np.linalg.norm(ctx.obj[c].p - ctx.obj[X].p)), c) for c in cands),
                      reverse=ext == "farthest")
        expect(len(dist) >= 2, "at least two candidates", 2, len(dist))
        (d0, best), (d1, _) = dist[0], dist[1]
        expect(separated(d0 - d1, max(d0, d1), m.distance_m, m.distance_rel), f"{ext} separated from runner-up",
               (d0, d1), "asked")
        expect(val == best, f"{ext} of {X}", best, val)
        if form == "open":
            expect(ids[1] == best, "object_ids[1] is the answer", best, ids[1])
        expect(_mentions(p["referring"][val]["text"], q["answer_text"]), "answer_text names the answer",
               p["referring"][val]["text"], q["answer_text"])
    elif fam == "multi_count":
        X = p["anchor"]
        expect(form == "count" and ids == [X], "object_ids = [X]", [X], ids)
        rad = p["radius_m"]
        if cfg.units == "imperial":
            expect(p["radius_unit"] == "ft" and float(p["radius_shown"]).is_integer()
                   and abs(rad - p["radius_shown"] / FT_PER_M) <= 1e-9, "radius in whole feet converted",
                   p["radius_shown"] / FT_PER_M, (rad, p["radius_shown"], p["radius_unit"]))
        else:
            expect(p["radius_unit"] == "m" and p["radius_shown"] == rad, "radius in metres", rad,
                   (p["radius_shown"], p["radius_unit"]))
        n = 0
        for k in ctx.kept:
            if k == X:
                continue
            d = float(np.linalg.norm(ctx.obj[k].p - ctx.obj[X].p))
            expect(separated(d - rad, max(d, rad), m.distance_m, m.distance_rel), f"{k} not on the radius",
                   (d, rad), "asked")
            n += d < rad
        expect(val == n and type(val) is int, f"count within {rad} m of {X}", n, val)
        expect(q["answer_text"].strip().startswith(str(n)) or str(n) in q["answer_text"], "count answer_text", n,
               q["answer_text"])
    elif fam == "viewpoint_object":
        vp = p["viewpoint"]
        expect(len(ids) == 3 and vp == {"type": "object", "at": ids[0], "facing": ids[1]},
               "viewpoint at A facing B, object_ids [A, B, C]", ids, vp)
        o, f, rt = viewpoint_axes(vp, ctx)
        a, c = ctx.obj[ids[0]], ctx.obj[ids[2]]
        if form == "yes_no":
            truth, sep, diff = egocentric(p["relation"], a, c, o, f, rt, m)
            expect(sep, f"egocentric {p['relation']} separated", diff, "asked")
            expect(val is truth, f"egocentric {p['relation']}", truth, val)
            expect(q["answer_text"] == ("Yes" if truth else "No"), "yes_no answer_text", truth, q["answer_text"])
        elif form == "choice":
            pair = EGO_AXES[p["axis"]]
            expect(p["choice_kind"] == "relation" and set(p["options"]) == pair and len(p["options"]) == 2,
                   "egocentric options", sorted(pair), p["options"])
            r0 = p["options"][0]
            truth, sep, diff = egocentric(r0, a, c, o, f, rt, m)
            expect(sep, f"egocentric {p['axis']} separated", diff, "asked")
            want = r0 if truth else next(iter(pair - {r0}))
            expect(val == want, f"egocentric choice ({p['axis']})", want, val)
        else:
            expect(form == "open" and q["answer"]["unit"] == "o'clock", "egocentric clock", "o'clock", q["answer"])
            want = clock_hour(c, o, f, rt, m)
            expect(val == want and type(val) is int, "egocentric clock hour", want, val)
            expect(f"{want} o'clock" in q["answer_text"], "clock answer_text", f"{want} o'clock", q["answer_text"])
    else:
        raise Mismatch(f"family {fam!r} has no checker")


def check_sample(sample: dict, ctx: Ctx, validate_schema: bool = True) -> list[str]:
    """Per-image checks (§4 units, §6 turns, §7 balance and caps, qa_sample schema when
    `validate_schema`). Returns problems."""
    cfg, qs, out = ctx.config, sample["questions"], []
    if len(qs) > cfg.max_questions:
        out.append(f"{len(qs)} questions > max_questions {cfg.max_questions}")
    for fam, n in Counter(q["family"] for q in qs).items():
        if n > cfg.max_per_family:
            out.append(f"{n} {fam} questions > max_per_family {cfg.max_per_family}")
    if len({q["qid"] for q in qs}) != len(qs):
        out.append("duplicate qid")
    for what, seq in (
        ("yes/no", [q["answer"]["value"] for q in qs if q["form"] == "yes_no"]),
        ("left/right", [q["answer"]["value"] in ("left_of", "left") for q in qs
                        if q["form"] == "choice" and q["answer"]["value"] in ("left_of", "right_of", "left", "right")]),
    ):  # §7: the k-th answer is (coin + k) % 2, so equal counts, alternating in question order
        if seq.count(True) != seq.count(False):
            out.append(f"{what} imbalance {Counter(seq)}")
        if any(a == b for a, b in zip(seq, seq[1:])):
            out.append(f"{what} answers do not alternate: {seq}")
    err = validation_error(sample, "qa_sample") if validate_schema else None
    if err:
        out.append(f"qa_sample schema: {err}")
    conv = sample["conversations"]
    if len(conv) != 2 * len(qs):
        out.append(f"{len(conv)} turns for {len(qs)} questions")
    else:
        for i, q in enumerate(qs):
            want = (q["reasoning"] + "\n" + q["answer_text"]) if cfg.cot and q.get("reasoning") else q["answer_text"]
            if conv[2 * i + 1]["value"] != want:
                out.append(f"assistant turn {i} != reasoning + answer_text")
            if not conv[2 * i]["value"].endswith(q["question"]):
                out.append(f"user turn {i} does not ask {q['question']!r}")
    if any(q["form"] == "numeric" for q in qs):
        first = conv[0]["value"]
        unit_word = "metres" if cfg.units == "metric" else "feet"
        if first.count(f"in {unit_word}, rounded to {cfg.decimals} decimal") != 1:
            out.append(f"first turn does not state the unit once: {first[:120]!r}")
    return out


# ----------------------------------------------------------------------------- corpus
CONFIGS = [
    QAConfig(seed=0, max_per_family=4, max_questions=40),
    QAConfig(seed=1, max_per_family=4, max_questions=40, units="imperial", decimals=1),
    QAConfig(seed=2, max_per_family=4, max_questions=40, decimals=3,
             margins=Margins(position_m=0.3, position_rel=0.08, size_m=0.08, volume_m3=0.01, size_rel=0.15,
                             distance_m=0.3, distance_rel=0.15, clock_deg=10.0)),
    QAConfig(seed=3, max_per_family=1, max_questions=6, cot=False, system_prompt=None,
             families={"relation_position": 1.0, "viewpoint_object": 2.0, "multi_count": 1.0, "metric_object": 0.5,
                       "direction_clock": 1.0, "grounding": 0.5}),
]
N_SYNTHETIC = 14
N_HAND = 24


@dataclass
class Corpus:
    """Every (record context, sample) generated for the check."""

    items: list  # [(Ctx, sample dict)]

    @property
    def questions(self):
        return [(ctx, q) for ctx, s in self.items for q in s["questions"]]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    records = [synthetic_record(s) for s in range(N_SYNTHETIC)]
    records += [hand_record(s) for s in range(N_HAND)]
    records += fixed_records()
    items = []
    for ci, cfg in enumerate(CONFIGS):
        for rec in records:
            s = generate_qa(rec, cfg)
            if s is not None:
                items.append((Ctx(rec, cfg), s))
    return Corpus(items)


def run_checker(pairs) -> tuple[int, list[str]]:
    """(number agreeing, mismatch descriptions) over (ctx, question) pairs."""
    bad = []
    for ctx, q in pairs:
        try:
            check_question(q, ctx)
        except (Mismatch, KeyError, TypeError, ValueError, IndexError) as e:
            params = {k: v for k, v in q["params"].items() if k not in ("margins", "referring")}
            bad.append(f"[{ctx.record['key']} {ctx.config.units}/{ctx.config.decimals} {q.get('qid')}] "
                       f"{q['family']}/{q['form']} {q['template_id']}: {q['question']!r}\n"
                       f"    {type(e).__name__}: {e}\n    engine answer={q['answer']!r} params={params}")
    return len(pairs) - len(bad), bad


# ----------------------------------------------------------------------------- tests
def test_checker_agrees_on_every_answer(corpus):
    pairs = corpus.questions
    assert len(pairs) >= 3000, f"only {len(pairs)} questions generated"
    ok, bad = run_checker(pairs)
    for b in bad:
        print(b)
    rate = ok / len(pairs)
    assert rate == 1.0, (f"agreement {100 * rate:.3f}% ({ok}/{len(pairs)}); first mismatches:\n"
                         + "\n".join(bad[:15]))


def test_per_image_rules(corpus):
    """Caps, Yes/No and left/right balance, turns and the unit statement (§4, §6, §7)."""
    problems = []
    records = {ctx.record["key"]: ctx.record for ctx, _ in corpus.items}
    for key, rec in records.items():  # the inputs themselves are valid repository records
        err = validation_error(rec, "image_record")
        if err:
            problems.append(f"input {key}: image_record schema: {err}")
    for i, (ctx, s) in enumerate(corpus.items):  # jsonschema is slow: validate every 4th sample
        problems += [f"{ctx.record['key']} ({ctx.config.units}): {p}" for p in check_sample(s, ctx, i % 4 == 0)]
    assert not problems, "\n".join(problems[:20])


def test_corpus_covers_every_family_form_and_rule(corpus):
    """The agreement above is only meaningful if the corpus exercises every case."""
    pairs = corpus.questions
    kinds = Counter((q["family"], q["form"], q["params"].get("choice_kind")) for _, q in pairs)
    expected = {("detection", "boxes", None), ("grounding", "boxes", None),
                ("relation_position", "yes_no", None), ("relation_position", "choice", "relation"),
                ("relation_position", "choice", "object"), ("relation_size", "yes_no", None),
                ("relation_size", "choice", "relation"), ("relation_size", "choice", "object"),
                ("metric_distance", "numeric", None), ("metric_object", "numeric", None),
                ("direction_clock", "open", None), ("multi_order", "open", None),
                ("multi_extreme", "choice", "object"), ("multi_extreme", "open", None),
                ("multi_count", "count", None), ("viewpoint_opposite", "yes_no", None),
                ("viewpoint_opposite", "choice", "relation"), ("viewpoint_object", "yes_no", None),
                ("viewpoint_object", "choice", "relation"), ("viewpoint_object", "open", None)}
    missing = expected - set(kinds)
    assert not missing, f"never generated: {sorted(missing)}"
    rules = Counter(e["rule"] for _, q in pairs for e in q["params"]["referring"].values())
    assert {"unique", "leftmost", "rightmost", "nearest", "farthest"} <= set(rules), rules
    units = Counter(q["answer"]["unit"] for _, q in pairs if q["form"] == "numeric")
    assert units["m"] > 50 and units["ft"] > 50, units
    assert Counter(q["params"]["viewpoint"]["type"] for _, q in pairs if q["family"] == "direction_clock").keys() \
        == {"camera", "object_camera_forward"}
    # the stress records really contain tilted gravity, near ties and rejected objects with boxes
    hand = [ctx for ctx, _ in corpus.items
            if ctx.record["key"].startswith(("hand", "row", "depth", "cluster", "topdown"))]
    tilt = max(math.degrees(math.acos(min(1.0, ctx.g[1]))) for ctx in hand)
    assert tilt > 20.0
    near = 0
    for ctx in hand:
        objs = list(ctx.obj.values())
        near += sum(1 for i, a in enumerate(objs) for b in objs[i + 1:]
                    if 0.0 < abs(a.p[0] - b.p[0]) < ctx.config.margins.position_m)
    assert near > 50, near
    assert any(o["status"] == "rejected" and o["box3d"] is not None
               for ctx, _ in corpus.items for o in ctx.record["objects"])


def test_rejected_objects_never_referenced(corpus):
    """No rejected id in object_ids, referring, options, answers or Bbox lists; detection
    lists exactly the kept objects."""
    for ctx, s in corpus.items:
        text = repr(s["questions"])
        for rid in ctx.rejected:
            assert f"'{rid}'" not in text, f"{rid} (rejected) appears in {ctx.record['key']}"
        for q in s["questions"]:
            if q["family"] == "detection":
                assert len(q["answer"]["value"]) == len(ctx.kept)


def _mutations(q: dict, ctx: Ctx):
    """Wrong versions of a correct question; the checker must flag every one."""
    def mut(fn):
        q2 = copy.deepcopy(q)
        fn(q2)
        return q2

    v, form = q["answer"]["value"], q["form"]
    if form == "yes_no":
        yield mut(lambda x: x["answer"].__setitem__("value", not v))
    elif form == "choice":
        other = [o for o in q["params"]["options"] if o != v][0]
        yield mut(lambda x: x["answer"].__setitem__("value", other))
    elif form == "numeric":
        d = q["params"]["decimals"]
        yield mut(lambda x: x["answer"].__setitem__("value", round(v + 2 * 10 ** -d, d)))
        yield mut(lambda x: x["answer"].__setitem__("unit", "ft" if q["answer"]["unit"] == "m" else "m"))
    elif form == "count":
        yield mut(lambda x: x["answer"].__setitem__("value", v + 1))
    elif form == "open" and isinstance(v, int):
        yield mut(lambda x: x["answer"].__setitem__("value", v % 12 + 1))
    elif form == "open" and isinstance(v, list):
        yield mut(lambda x: x["answer"].__setitem__("value", v[::-1]))
    elif form == "open":
        other = [k for k in ctx.kept if k not in (v, q["object_ids"][0])]
        if other:
            yield mut(lambda x: x["answer"].__setitem__("value", other[0]))
    elif form == "boxes" and v:
        yield mut(lambda x: x["answer"].__setitem__("value", v[1:]))
        b = v[0]
        yield mut(lambda x: x["answer"]["value"].__setitem__(0, b.replace(b.split(",")[3], "%.2f" % (
            float(b.split(",")[3]) + 0.05), 1)))
    ref = q["params"]["referring"]
    if ref:
        oid = next(iter(ref))
        wrong = "leftmost" if ref[oid]["rule"] != "leftmost" else "rightmost"
        yield mut(lambda x: x["params"]["referring"][oid].update(
            rule=wrong, text=REFERRING_TEXT[wrong].format(ref[oid]["category"])))
    if ctx.rejected and q["object_ids"]:
        rid = sorted(ctx.rejected)[0]
        yield mut(lambda x: x["object_ids"].__setitem__(0, rid))


def test_checker_detects_wrong_answers(corpus):
    """Self-test: corrupted answers (flipped, swapped, off by two rounding steps, reordered,
    wrong unit, rejected id) are all reported as mismatches."""
    pairs = corpus.questions[::7]
    n = missed = 0
    for ctx, q in pairs:
        for q2 in _mutations(q, ctx):
            n += 1
            ok, bad = run_checker([(ctx, q2)])
            missed += ok
    assert n > 300
    assert missed == 0, f"{missed} of {n} corrupted answers passed the checker"


def test_margin_stress_records_yield_questions(corpus):
    """The hand-made tie records still produce questions (the engine skips ties, not images)."""
    per_key = Counter(ctx.record["key"] for ctx, s in corpus.items for _ in s["questions"])
    for key in ("row", "depth", "cluster", "topdown"):
        assert per_key[key] > 10, per_key[key]
    # the two cups 0.10 m apart in "row" are never referred to by a position/distance rule
    cups = {"row_3", "row_4"}
    for ctx, q in corpus.questions:
        if ctx.record["key"] == "row":
            assert not (cups & set(q["params"]["referring"])), q["question"]


def test_checker_primitives_on_hand_geometry():
    """The checker's own geometry against numbers worked out by hand (upright camera)."""
    m = Margins()
    ctx = Ctx(_record("prim", K_from_fov(W, H, 60.0), [0.0, 1.0, 0.0], [
        _object("a", "cup", Box3D.from_gravity([0.0, 0.5, 2.0], [0.2, 0.3, 0.2], 0.0), np.eye(3)),
        _object("b", "lamp", Box3D.from_gravity([1.0, 0.0, 2.0 + math.sqrt(3.0)], [0.3, 1.0, 0.3], 0.0), np.eye(3)),
        _object("c", "book", Box3D.from_gravity([1.0, 0.5, 3.0], [0.3, 0.05, 0.4], 0.0), np.eye(3)),
    ]), QAConfig())
    a, b, c = (ctx.obj[k] for k in "abc")
    o, f, rt = viewpoint_axes({"type": "camera"}, ctx)
    assert relation("left_of", a, b, f, rt, m)[:2] == (True, True)  # b is 1 m to the right of a
    assert relation("above", a, b, f, rt, m)[:2] == (False, True)  # b is 0.5 m higher: a is below
    assert relation("in_front_of", a, b, f, rt, m)[0] is True
    o2, f2, rt2 = viewpoint_axes({"type": "opposite"}, ctx)
    assert relation("left_of", a, b, f2, rt2, m)[0] is False and relation("above", a, b, f2, rt2, m)[0] is False
    assert relation("taller", b, a, f, rt, m)[:2] == (True, True)
    assert relation("wider", b, c, f, rt, m)[1] is False  # equal widths (shorter sides 0.3): inside the size margin
    # from a, b lies at atan2(1, sqrt(3)) = 30 degrees: 1 o'clock; c at atan2(1, 1) = 45: a half hour
    assert clock_hour(b, a.p, np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), m) == 1
    with pytest.raises(Mismatch):
        clock_hour(c, a.p, np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), m)
    # viewer at a facing b: c is ahead-right of a, and to the right of the line a -> b? e = (1, 0, 1)
    o3, f3, rt3 = viewpoint_axes({"type": "object", "at": "a", "facing": "b"}, ctx)
    assert np.allclose(f3, [0.5, 0.0, math.sqrt(3.0) / 2]) and np.allclose(rt3, [math.sqrt(3.0) / 2, 0.0, -0.5])
    right = egocentric("right", a, c, o3, f3, rt3, m)
    assert right[0] is True and math.isclose(right[2], (math.sqrt(3.0) - 1) / 2)
    assert separated(0.2, 3.0, 0.15, 0.05) and not separated(0.2, 5.0, 0.15, 0.05)
    assert not separated(-0.1, 1.0, 0.15, 0.05)

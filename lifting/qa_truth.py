"""How true QA answers are of the real scene: every question recomputed from GT 3D boxes.

An answer generated from lifted boxes is worth training on only if it also holds for the
ground truth. `QATruth` maps each question's objects to GT objects (repository object ->
its `source_ann_id` -> the GT annotation of the same image), recomputes the answer from the
GT boxes and the dataset's gravity (the lifted record's `gravity_cam` when the GT has none),
and classifies it:

- ``true`` / ``false``: the GT answer agrees / disagrees with the engine's;
- ``ambiguous``: under GT the question is within its own margin (a near tie: a comparison
  whose GT difference is below `params.margins`, a clock position near a half hour, a count
  with an object near the radius) -- neither answer is reliably true;
- ``unmappable``: some object it depends on has no GT (no source id, not annotated in 3D,
  image not in the GT), by reason.

Numeric answers are scored by relative error (within 10 % / 25 % of the GT value), clock
hours exactly and within one hour. Box lists (detection, grounding) are scored by
`lift3d eval --gt` (3D IoU), not here: they count as ``not_scored``.

This is a second implementation of the answer definitions of docs/QA_FAMILIES.md (written
from the document, not from `lifting.qa`), so an engine bug shows up as falsehood here.
Conventions (docs §1): gravity frame with x right, y down, z forward; width / length the
shorter / longer horizontal side of a box.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from lifting.boxes import gravity_frame

FT_PER_M = 3.280839895
STATUSES = ("true", "false", "ambiguous", "unmappable", "not_scored")


@dataclass
class _Obj:
    p: np.ndarray  # (3,) gravity-frame centre, metres
    r: float  # camera distance, metres
    w: float  # shorter horizontal side
    h: float  # along gravity
    l: float  # longer horizontal side
    V: float


class _Unmappable(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _sep(d: float, scale: float, abs_m: float, rel: float) -> bool:
    return abs(d) >= abs_m and abs(d) >= rel * scale


class _GTScene:
    """GT view of one lifted image: the record's kept objects, each as its GT box."""

    def __init__(self, record: dict, gt_image, gravity_cam):
        g = np.asarray(gravity_cam if gravity_cam is not None else record.get("gravity_cam") or [0, 1, 0], float)
        G = gravity_frame(g / np.linalg.norm(g))
        by_ann = {str(o.ann_id): o for o in gt_image.objects}
        self.kept = [o for o in record.get("objects") or () if o.get("status") == "kept" and o.get("box3d")]
        self._objs: dict[str, _Obj | str] = {}
        for o in record.get("objects") or ():
            oid = str(o["object_id"])
            ann = o.get("source_ann_id")
            gto = by_ann.get(str(ann)) if ann is not None else None
            if gto is None:
                self._objs[oid] = "no_source_ann_id" if ann is None else "object_not_in_gt"
                continue
            c = np.asarray(gto.box.center_cam, float)
            sx, h, sz = (float(v) for v in gto.box.dimensions)
            self._objs[oid] = _Obj(c @ G, float(np.linalg.norm(c)), min(sx, sz), h, max(sx, sz), sx * h * sz)

    def obj(self, oid) -> _Obj:
        o = self._objs.get(str(oid))
        if o is None:
            raise _Unmappable("object_not_in_record")
        if isinstance(o, str):
            raise _Unmappable(o)
        return o

    def kept_ids(self) -> list[str]:
        return [str(o["object_id"]) for o in self.kept]


# -- the definitions of docs/QA_FAMILIES.md ------------------------------------------------

def _view(vp: dict, s: _GTScene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, f, rt) of a viewpoint spec (§1)."""
    t = vp.get("type", "camera")
    if t == "camera":
        return np.zeros(3), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    if t == "opposite":
        return np.zeros(3), np.array([0.0, 0.0, -1.0]), np.array([-1.0, 0.0, 0.0])
    if t == "object_camera_forward":
        return s.obj(vp["at"]).p, np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    if t == "object":
        a, b = s.obj(vp["at"]).p, s.obj(vp["facing"]).p
        f = np.array([b[0] - a[0], 0.0, b[2] - a[2]])
        n = float(np.linalg.norm(f))
        if n < 1e-9:
            raise _Unmappable("degenerate_viewpoint")
        f = f / n
        return a, f, np.array([f[2], 0.0, -f[0]])
    raise _Unmappable(f"unknown_viewpoint_{t}")


_OPPOSITE = {"left_of": "right_of", "in_front_of": "behind", "above": "below", "bigger": "smaller",
             "taller": "shorter", "wider": "thinner"}
_OPPOSITE.update({v: k for k, v in list(_OPPOSITE.items())})


def _relation(rel: str, A: _Obj, B: _Obj, f, rt, M: dict) -> tuple[bool, bool]:
    """(rel(A, B) holds, its difference is outside the margin) -- §3."""
    d = B.p - A.p
    if rel in ("left_of", "right_of", "in_front_of", "behind", "above", "below"):
        v = {"left_of": rt @ d, "right_of": -(rt @ d), "in_front_of": f @ d, "behind": -(f @ d),
             "above": d[1], "below": -d[1]}[rel]
        return bool(v > 0), _sep(float(v), max(A.r, B.r), M["position_m"], M["position_rel"])
    if rel in ("bigger", "smaller"):
        v = (A.V - B.V) * (1 if rel == "bigger" else -1)
        return bool(v > 0), _sep(v, max(A.V, B.V), M["volume_m3"], M["size_rel"])
    x, y = {"taller": (A.h, B.h), "shorter": (A.h, B.h), "wider": (A.w, B.w), "thinner": (A.w, B.w)}[rel]
    v = (x - y) * (1 if rel in ("taller", "wider") else -1)
    return bool(v > 0), _sep(v, max(x, y), M["size_m"], M["size_rel"])


def _ego(rel: str, A: _Obj, C: _Obj, f, rt, M: dict) -> tuple[bool, bool]:
    """Egocentric relation of target C for a viewer at A (§3)."""
    e = C.p - A.p
    v = {"left": -(rt @ e), "right": rt @ e, "ahead": f @ e, "behind": -(f @ e)}[rel]
    return bool(v > 0), _sep(float(v), max(A.r, C.r), M["position_m"], M["position_rel"])


def _clock(e: np.ndarray, f, rt, M: dict) -> tuple[int, bool]:
    """(hour 1..12, unambiguous) of direction e (§5 direction_clock)."""
    right, fwd = float(rt @ e), float(f @ e)
    theta = math.degrees(math.atan2(right, fwd)) / 30.0
    hour = int(round(theta)) % 12 or 12
    frac = theta - math.floor(theta)
    clear = math.hypot(right, fwd) >= M["position_m"] and abs(frac - 0.5) >= M["clock_deg"] / 30.0
    return hour, clear


def _metric(fam: str, q: dict, s: _GTScene) -> float:
    """GT value (metres) of a numeric question."""
    p = q["params"]
    if fam == "metric_object":
        o = s.obj(q["object_ids"][0])
        return {"width": o.w, "height": o.h, "length": o.l, "camera_distance": o.r}[p["quantity"]]
    a, b = (s.obj(i) for i in q["object_ids"][:2])
    d = b.p - a.p
    return {"center_distance": float(np.linalg.norm(d)), "horizontal_distance": math.hypot(d[0], d[2]),
            "vertical_distance": abs(float(d[1]))}[p["quantity"]]


def _axis(q: dict) -> str:
    p = q.get("params") or {}
    for k in ("relation", "axis", "quantity", "criterion", "extreme"):
        if p.get(k) is not None:
            return str(p[k])
    if q.get("family") in ("direction_clock", "viewpoint_object") and q.get("form") == "open":
        return "clock"
    return "-"


# -- one question ------------------------------------------------------------------------------

def judge(q: dict, s: _GTScene) -> tuple[str, dict]:
    """(status, details) of one question under GT; details carry the GT answer and, for
    numeric / clock answers, the error."""
    fam, form, p = q["family"], q["form"], q.get("params") or {}
    M = p.get("margins") or {}
    val = (q.get("answer") or {}).get("value")
    if form == "boxes":
        return "not_scored", {}
    if fam in ("relation_position", "relation_size", "viewpoint_opposite"):
        a, b = (s.obj(i) for i in q["object_ids"][:2])
        _, f, rt = _view(p.get("viewpoint") or {"type": "camera"}, s)
        if form == "yes_no":
            holds, clear = _relation(p["relation"], a, b, f, rt, M)
            return _binary(holds == bool(val), clear, {"gt": holds})
        if p.get("choice_kind") == "relation":
            holds, clear = _relation(val, a, b, f, rt, M)
            gt = val if holds else _OPPOSITE[val]
            return _binary(holds, clear, {"gt": gt})
        x, y = q["object_ids"][:2]
        other = y if str(val) == str(x) else x
        holds, clear = _relation(p["relation"], s.obj(val), s.obj(other), f, rt, M)
        return _binary(holds, clear, {"gt": val if holds else other})
    if fam == "viewpoint_object":
        A, _, C = (s.obj(i) for i in q["object_ids"][:3])
        _, f, rt = _view(p["viewpoint"], s)
        if form == "open":
            hour, clear = _clock(C.p - A.p, f, rt, M)
            return _hour(int(val), hour, clear)
        rel = p["relation"] if form == "yes_no" else val
        holds, clear = _ego(rel, A, C, f, rt, M)
        if form == "yes_no":
            return _binary(holds == bool(val), clear, {"gt": holds})
        return _binary(holds, clear, {"gt": rel if holds else {"left": "right", "right": "left", "ahead": "behind",
                                                               "behind": "ahead"}[rel]})
    if fam == "direction_clock":
        o, f, rt = _view(p["viewpoint"], s)
        hour, clear = _clock(s.obj(q["object_ids"][-1]).p - o, f, rt, M)
        return _hour(int(val), hour, clear)
    if form == "numeric":
        gt = _metric(fam, q, s) * (FT_PER_M if p.get("units") == "imperial" else 1.0)
        err = abs(float(val) - gt) / max(gt, 1e-9)
        return ("true" if err <= 0.25 else "false"), {"gt": round(gt, 4), "rel_err": round(err, 4)}
    if fam == "multi_order":
        ids = [str(i) for i in q["object_ids"]]
        key = {"camera_distance": lambda o: o.r, "volume": lambda o: o.V, "height": lambda o: o.h}[p["criterion"]]
        vals = {i: key(s.obj(i)) for i in ids}
        order = sorted(ids, key=vals.get, reverse=p["direction"] == "descending")
        kind = {"camera_distance": ("distance_m", "distance_rel"), "volume": ("volume_m3", "size_rel"),
                "height": ("size_m", "size_rel")}[p["criterion"]]
        clear = all(_sep(vals[x] - vals[y], max(vals[x], vals[y]), M[kind[0]], M[kind[1]])
                    for x, y in zip(order, order[1:]))
        return _binary(order == [str(v) for v in val], clear, {"gt": order})
    if fam == "multi_extreme":
        X = s.obj(p["anchor"])
        cands = [str(i) for i in p["options"]] if form == "choice" else [i for i in s.kept_ids() if i != str(p["anchor"])]
        dist = {i: float(np.linalg.norm(s.obj(i).p - X.p)) for i in cands}
        ranked = sorted(cands, key=dist.get, reverse=p["extreme"] == "farthest")
        clear = len(ranked) < 2 or _sep(dist[ranked[0]] - dist[ranked[1]], max(dist[ranked[0]], dist[ranked[1]]),
                                        M["distance_m"], M["distance_rel"])
        return _binary(ranked[0] == str(val), clear, {"gt": ranked[0]})
    if fam == "multi_count":
        X = s.obj(p["anchor"])
        rad = float(p["radius_m"])
        dist = [float(np.linalg.norm(s.obj(i).p - X.p)) for i in s.kept_ids() if i != str(p["anchor"])]
        n = sum(d < rad for d in dist)
        clear = all(_sep(d - rad, max(d, rad), M["distance_m"], M["distance_rel"]) for d in dist)
        return _binary(n == int(val), clear, {"gt": n})
    return "not_scored", {"why": f"unknown family/form {fam}/{form}"}


def _binary(agrees: bool, clear: bool, details: dict) -> tuple[str, dict]:
    if not clear:
        return "ambiguous", {**details, "gt_agrees": agrees}
    return ("true" if agrees else "false"), details


def _hour(val: int, gt: int, clear: bool) -> tuple[str, dict]:
    off = min((val - gt) % 12, (gt - val) % 12)
    d = {"gt": gt, "hours_off": off}
    if not clear:
        return "ambiguous", {**d, "gt_agrees": off == 0}
    return ("true" if off == 0 else "false"), d


# -- a whole QA output -------------------------------------------------------------------------

def evaluate_qa(samples, records: dict, gt) -> dict:
    """`QATruth` report of QA samples (dicts of QA shards' KEY.json) made from `records`
    (repository image records by key) against a `lifting.evaluate.GTSet`; images are found
    in the GT as `lift3d eval` finds them (file name, else image id)."""
    from lifting.evaluate import Evaluator

    ev = Evaluator(gt)

    def find_gt(rec):
        iid = ev.find_gt_image(rec)
        if iid is None:
            return None, None
        im = gt.images[iid]
        return im, im.gravity_cam

    truth = QATruth(find_gt)
    for sample in samples:
        truth.add(sample, records.get(sample.get("image_key") or sample.get("key")))
    return truth.summary()


class QATruth:
    """Accumulates `judge` over QA samples; `summary()` is the JSON report.

    Args:
        find_gt: record dict -> (GT image or None, the GT's gravity_cam or None).
        examples: how many false answers to keep as examples (lifted vs GT values).
    """

    def __init__(self, find_gt, examples: int = 20):
        self.find_gt = find_gt
        self.n_examples = examples
        self.rows: list[tuple[str, str, str, str, dict]] = []  # family, form, axis, status, details
        self.unmappable: Counter = Counter()
        self.examples: list[dict] = []
        self.images = 0
        self.questions_per_image: list[int] = []

    def add(self, sample: dict, record: dict | None) -> None:
        qs = sample.get("questions") or []
        self.images += 1
        self.questions_per_image.append(len(qs))
        scene, why = None, None
        if record is None:
            why = "record_not_in_repository"
        else:
            gt_image, gravity = self.find_gt(record)
            if gt_image is None:
                why = "image_not_in_gt"
            else:
                scene = _GTScene(record, gt_image, gravity)
        for q in qs:
            fam, form, axis = q.get("family", "?"), q.get("form", "?"), _axis(q)
            if scene is None:
                status, d = "unmappable", {"reason": why}
            else:
                try:
                    status, d = judge(q, scene)
                except _Unmappable as e:
                    status, d = "unmappable", {"reason": e.reason}
            if status == "unmappable":
                self.unmappable[d["reason"]] += 1
            self.rows.append((fam, form, axis, status, d))
            if status == "false" and len(self.examples) < self.n_examples:
                self.examples.append({"qid": q.get("qid"), "family": fam, "form": form, "axis": axis,
                                      "question": q.get("question"), "answer": (q.get("answer") or {}).get("value"),
                                      **{k: v for k, v in d.items() if k != "gt_agrees"}})

    @staticmethod
    def _figures(rows) -> dict:
        c = Counter(r[3] for r in rows)
        out = {k: c.get(k, 0) for k in STATUSES}
        out["questions"] = len(rows)
        binary = [r for r in rows if r[1] in ("yes_no", "choice") and r[3] in ("true", "false")]
        exact = [r for r in rows if r[1] in ("open", "count") and r[2] != "clock" and r[3] in ("true", "false")]
        numeric = [r[4]["rel_err"] for r in rows if r[1] == "numeric" and "rel_err" in r[4]]
        clocks = [r[4]["hours_off"] for r in rows if r[2] == "clock" and "hours_off" in r[4]]
        decided = out["true"] + out["false"]
        out["truth_rate"] = round(out["true"] / decided, 4) if decided else None
        out["binary_truth_rate"] = round(sum(r[3] == "true" for r in binary) / len(binary), 4) if binary else None
        out["binary_scored"] = len(binary)
        out["exact_truth_rate"] = round(sum(r[3] == "true" for r in exact) / len(exact), 4) if exact else None
        out["exact_scored"] = len(exact)
        out["numeric_scored"] = len(numeric)
        out["numeric_within_10pct"] = round(sum(e <= 0.10 for e in numeric) / len(numeric), 4) if numeric else None
        out["numeric_within_25pct"] = round(sum(e <= 0.25 for e in numeric) / len(numeric), 4) if numeric else None
        out["numeric_median_rel_err"] = round(float(np.median(numeric)), 4) if numeric else None
        out["clock_scored"] = len(clocks)
        out["clock_exact"] = round(sum(h == 0 for h in clocks) / len(clocks), 4) if clocks else None
        out["clock_within_1h"] = round(sum(h <= 1 for h in clocks) / len(clocks), 4) if clocks else None
        return out

    def summary(self) -> dict:
        out = {"mode": "qa_truth", "images": self.images,
               "questions_per_image": round(float(np.mean(self.questions_per_image)), 3) if self.images else 0.0}
        out.update(self._figures(self.rows))
        out["unmappable_reasons"] = dict(sorted(self.unmappable.items()))
        groups: dict[str, list] = defaultdict(list)
        for r in self.rows:
            groups[f"{r[0]}/{r[1]}/{r[2]}"].append(r)
        fams: dict[str, list] = defaultdict(list)
        for r in self.rows:
            fams[r[0]].append(r)
        out["per_family"] = {k: self._figures(v) for k, v in sorted(fams.items())}
        out["per_family_form_axis"] = {k: self._figures(v) for k, v in sorted(groups.items())}
        out["false_examples"] = self.examples
        return out

"""Question families: each builds one valid question from a `Scene`, or returns None when
the image has no (further) unambiguous candidate. Definitions: docs/QA_FAMILIES.md.

Every family samples candidates (pairs, triples) at random instead of enumerating all of
them, so the cost per question is bounded by `QAConfig.attempts`, not by the object count.
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import asdict

from lifting.qa.config import FT_PER_M, Margins, QAConfig
from lifting.qa.scene import (AXES, CAMERA_VIEW, EGO_AXES, OPPOSITE, OPPOSITE_VIEW, Obj, Scene, clock_hour,
                              view_coords)
from lifting.qa.templates import Q, TemplateBank

LEFT_RIGHT_VALUES = frozenset({"left_of", "right_of", "left", "right"})


@functools.lru_cache(maxsize=16)
def _margins_dict(m: Margins) -> dict:
    return asdict(m)


class Ctx:
    """Per-image generation state: scene, seeded rng, balance counters, units."""

    def __init__(self, scene: Scene, rng: random.Random, config: QAConfig, bank: TemplateBank):
        self.scene, self.rng, self.config, self.bank = scene, rng, config, bank
        self.m = config.margins
        self.coin_yes = rng.getrandbits(1)
        self.coin_lr = rng.getrandbits(1)
        self.n_yes = 0
        self.n_lr = 0
        self.used: set = set()
        imperial = config.units == "imperial"
        self.factor = FT_PER_M if imperial else 1.0
        self.unit = "ft" if imperial else "m"
        self.vol_unit = "ft³" if imperial else "m³"
        self.unit_word = "feet" if imperial else "metres"
        self.d = config.decimals
        self.has_numbers = False
        self.n3d = config.style == "n3d"

    # -- balance ---------------------------------------------------------------------
    def want_yes(self) -> bool:
        """Target answer of the next yes/no question (alternates within the image)."""
        return (self.coin_yes + self.n_yes) % 2 == 0

    def want_left(self) -> bool:
        """Target of the next left/right answer (alternates within the image)."""
        return (self.coin_lr + self.n_lr) % 2 == 0

    # -- numbers ---------------------------------------------------------------------
    def num(self, metres: float) -> float:
        """A length in the answer unit, rounded to the stated decimals."""
        return round(metres * self.factor, self.d)

    def fmt(self, metres: float) -> str:
        """A length (metres) as text in the answer unit, without the unit."""
        return _fmt(metres * self.factor, self.d)

    def fmt_vol(self, m3: float) -> str:
        return _fmt(m3 * self.factor ** 3, max(self.d, 3))

    def obj(self, q: dict, letter: str, o: Obj) -> None:
        """Put an object's referring text and Bbox text into the template values (and, in
        the n3d style, its centre as N3D-VLM writes it: `c_<letter>`)."""
        q[letter] = o.ref[0]
        q["box_" + letter] = self.scene.bbox(o)
        if self.n3d:
            q["c_" + letter] = self.centre(o)

    def centre(self, o: Obj) -> str:
        """The box centre as N3D-VLM's traces write it: camera frame with x left, y up,
        z forward, in the answer unit: "[-0.04, -0.13, 2.75]"."""
        x, y, z = (float(v) for v in o.box3d["center_cam"])
        return f"[{self.fmt(-x)}, {self.fmt(-y)}, {self.fmt(z)}]"

    # -- emission ----------------------------------------------------------------------
    def new(self, family: str, variant: str, form: str, objs: list[Obj], q: dict, value, unit, params: dict,
            refer: bool = True) -> dict:
        """Render and return one question dict (qid is set by the engine)."""
        q = Q(q)
        q["value"] = value
        q["unit"] = self.unit
        q["vol_unit"] = self.vol_unit
        q["unit_word"] = self.unit_word
        tid, text = self.bank.question(family, variant, q, self.rng)
        reasoning = self.bank.render_reasoning(family, variant, q) if self.config.cot else None
        answer_text = self.bank.render_answer(family, variant, q)
        params["variant"] = variant
        params["referring"] = self.scene.referring(objs) if refer else {}
        params["margins"] = _margins_dict(self.m)
        params["units"] = self.config.units
        params["decimals"] = self.d
        if form == "yes_no":
            self.n_yes += 1
        elif form == "choice" and value in LEFT_RIGHT_VALUES:
            self.n_lr += 1
        if form == "numeric":
            self.has_numbers = True
        return {
            "family": family,
            "template_id": tid,
            "form": form,
            "object_ids": [o.oid for o in objs],
            "question": text,
            "reasoning": reasoning,
            "answer_text": answer_text,
            "answer": {"value": value, "unit": unit},
            "params": params,
            "rephrased": False,
        }


def _fmt(x: float, d: int) -> str:
    s = f"{x:.{d}f}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


# -- detection and grounding ---------------------------------------------------------------

def detection(ctx: Ctx):
    s = ctx.scene
    if "detection" in ctx.used or s.behind:
        return None
    ctx.used.add("detection")
    objs = s.objects
    boxes = [s.bbox(o) for o in objs]
    q = {"boxes": boxes, "n": len(boxes)}
    return ctx.new("detection", "all", "boxes", objs, q, boxes, None, {}, refer=False)


def grounding(ctx: Ctx):
    s = ctx.scene
    if s.behind:
        return None
    cats = [c for c in s.categories if ("grounding", c) not in ctx.used]
    if not cats:
        return None
    cat = ctx.rng.choice(cats)
    ctx.used.add(("grounding", cat))
    objs = s.categories[cat]
    boxes = [s.bbox(o) for o in objs]
    q = {"category": cat, "boxes": boxes, "n": len(boxes)}
    return ctx.new("grounding", "category", "boxes", objs, q, boxes, None, {"category": cat}, refer=False)


# -- two-object relations ----------------------------------------------------------------

def _relation_values(ctx: Ctx, axis: str, a: Obj, b: Obj, d: float, view) -> dict:
    """Template values explaining `axis` for (a, b): coordinates, difference, conclusion."""
    q: dict = {"axis": axis}
    ctx.obj(q, "a", a)
    ctx.obj(q, "b", b)
    pos, neg, kind = AXES[axis]
    q["holds"] = pos if d > 0 else neg
    if axis in ("horizontal", "depth"):
        ra, fa = view_coords(a.x, a.z, view)
        rb, fb = view_coords(b.x, b.z, view)
        va, vb = (ra, rb) if axis == "horizontal" else (fa, fb)
        q.update(va=ctx.fmt(va), vb=ctx.fmt(vb), diff=ctx.fmt(abs(vb - va)))
    elif axis == "vertical":  # heights up from the camera centre's level: -y
        q.update(va=ctx.fmt(-a.y), vb=ctx.fmt(-b.y), diff=ctx.fmt(abs(b.y - a.y)))
    elif axis == "volume":
        q.update(dims_a=[ctx.fmt(a.w), ctx.fmt(a.h), ctx.fmt(a.l)], dims_b=[ctx.fmt(b.w), ctx.fmt(b.h), ctx.fmt(b.l)],
                 va=ctx.fmt_vol(a.V), vb=ctx.fmt_vol(b.V), diff=ctx.fmt_vol(abs(a.V - b.V)))
    elif axis == "height":
        q.update(va=ctx.fmt(a.h), vb=ctx.fmt(b.h), diff=ctx.fmt(abs(a.h - b.h)))
    else:  # width
        q.update(va=ctx.fmt(a.w), vb=ctx.fmt(b.w), diff=ctx.fmt(abs(a.w - b.w)))
    return q


def _pair_relation(ctx: Ctx, family: str, axes: tuple, variants: tuple, view, vp_spec: dict):
    s, rng = ctx.scene, ctx.rng
    objs = s.referable
    if len(objs) < 2:
        return None
    for _ in range(ctx.config.attempts):
        a, b = rng.sample(objs, 2)
        axis = rng.choice(axes)
        variant = rng.choice(variants)
        sig = (family, variant, axis, frozenset((a.oid, b.oid)))
        if sig in ctx.used:
            continue
        d, scale, kind = s.axis_diff(axis, a, b, view)
        if not s.is_separated(d, scale, kind, s.uncertainty(axis, a, b)):
            ctx.used.add(sig)
            continue
        ctx.used.add(sig)
        pos, neg, _ = AXES[axis]
        params = {"viewpoint": dict(vp_spec), "axis": axis}
        if variant == "choice_relation":
            if axis == "horizontal":
                if (d > 0) != ctx.want_left():
                    a, b, d = b, a, -d
            elif rng.random() < 0.5:
                a, b, d = b, a, -d
            value = pos if d > 0 else neg
            options = [pos, neg] if rng.random() < 0.5 else [neg, pos]
            q = _relation_values(ctx, axis, a, b, d, view)
            q["options"] = options
            params.update(choice_kind="relation", options=options, options_text=options)
            return ctx.new(family, variant, "choice", [a, b], q, value, None, params)
        if rng.random() < 0.5:
            a, b, d = b, a, -d
        holds = pos if d > 0 else neg
        q = _relation_values(ctx, axis, a, b, d, view)
        if variant == "yes_no":
            want = ctx.want_yes()
            rel = holds if want else OPPOSITE[holds]
            q["relation"] = rel
            params["relation"] = rel
            return ctx.new(family, variant, "yes_no", [a, b], q, want, None, params)
        # choice_object: "which of X and Y is more <relation>?"
        rel = rng.choice((pos, neg))
        winner = a if rel == holds else b
        q["relation"] = rel
        q["winner"] = winner.ref[0]
        q["loser"] = (b if winner is a else a).ref[0]
        params.update(choice_kind="object", relation=rel, options=[a.oid, b.oid],
                      options_text=[a.ref[0], b.ref[0]])
        return ctx.new(family, variant, "choice", [a, b], q, winner.oid, None, params)
    return None


def relation_position(ctx: Ctx):
    return _pair_relation(ctx, "relation_position", ("horizontal", "vertical", "depth"),
                          ("yes_no", "choice_relation", "choice_object"), CAMERA_VIEW, {"type": "camera"})


def relation_size(ctx: Ctx):
    return _pair_relation(ctx, "relation_size", ("volume", "height", "width"),
                          ("yes_no", "choice_relation", "choice_object"), CAMERA_VIEW, {"type": "camera"})


def viewpoint_opposite(ctx: Ctx):
    return _pair_relation(ctx, "viewpoint_opposite", ("horizontal", "depth", "vertical"),
                          ("yes_no", "choice_relation"), OPPOSITE_VIEW, {"type": "opposite"})


# -- metric ----------------------------------------------------------------------------

def metric_distance(ctx: Ctx):
    s, rng = ctx.scene, ctx.rng
    if len(s.referable) < 2:
        return None
    for _ in range(ctx.config.attempts):
        a, b = rng.sample(s.referable, 2)
        quantity = rng.choice(("center_distance", "horizontal_distance", "vertical_distance"))
        sig = ("metric_distance", quantity, frozenset((a.oid, b.oid)))
        if sig in ctx.used:
            continue
        ctx.used.add(sig)
        dx, dy, dz = b.x - a.x, b.y - a.y, b.z - a.z
        if quantity == "center_distance":
            raw = math.sqrt(dx * dx + dy * dy + dz * dz)
        elif quantity == "horizontal_distance":
            raw = math.sqrt(dx * dx + dz * dz)
        else:
            raw = abs(dy)
        if not s.resolves(raw, s.uncertainty("distance", a, b)):
            continue  # below what the lifting resolves: a relative tolerance cannot grade it
        q: dict = {"pa": [ctx.fmt(a.x), ctx.fmt(a.y), ctx.fmt(a.z)], "pb": [ctx.fmt(b.x), ctx.fmt(b.y), ctx.fmt(b.z)],
                   "dx": ctx.fmt(dx), "dy": ctx.fmt(dy), "dz": ctx.fmt(dz)}
        ctx.obj(q, "a", a)
        ctx.obj(q, "b", b)
        value = ctx.num(raw)
        q["answer"] = ctx.fmt(raw)
        return ctx.new("metric_distance", quantity, "numeric", [a, b], q, value, ctx.unit, {"quantity": quantity})
    return None


def metric_object(ctx: Ctx):
    s, rng = ctx.scene, ctx.rng
    if not s.referable:
        return None
    for _ in range(ctx.config.attempts):
        a = rng.choice(s.referable)
        quantity = rng.choice(("width", "height", "length", "camera_distance"))
        sig = ("metric_object", quantity, a.oid)
        if sig in ctx.used:
            continue
        ctx.used.add(sig)
        raw = {"width": a.w, "height": a.h, "length": a.l, "camera_distance": a.r}[quantity]
        sigma = {"width": a.w * a.sf, "height": a.h * a.sh, "length": a.l * a.sf, "camera_distance": a.sc}[quantity]
        if not s.resolves(raw, sigma):
            continue  # below what the lifting resolves: a relative tolerance cannot grade it
        q: dict = {"pa": [ctx.fmt(a.x), ctx.fmt(a.y), ctx.fmt(a.z)]}
        ctx.obj(q, "a", a)
        q["answer"] = ctx.fmt(raw)
        return ctx.new("metric_object", quantity, "numeric", [a], q, ctx.num(raw), ctx.unit, {"quantity": quantity})
    return None


# -- direction -------------------------------------------------------------------------

def direction_clock(ctx: Ctx):
    s, rng = ctx.scene, ctx.rng
    if not s.referable:
        return None
    m = ctx.m
    for _ in range(ctx.config.attempts):
        variant = "camera" if len(s.referable) < 2 or rng.random() < 0.4 else "object"
        if variant == "camera":
            a, b = None, rng.choice(s.referable)
            ex, ez = b.x, b.z
            vp = {"type": "camera"}
            objs = [b]
        else:
            a, b = rng.sample(s.referable, 2)
            ex, ez = b.x - a.x, b.z - a.z
            vp = {"type": "object_camera_forward", "at": a.oid}
            objs = [a, b]
        sig = ("direction_clock", variant, tuple(o.oid for o in objs))
        if sig in ctx.used:
            continue
        ctx.used.add(sig)
        right, fwd = view_coords(ex, ez, CAMERA_VIEW)
        dist = math.hypot(right, fwd)
        if dist < m.position_m:
            continue
        sigma = b.sc if a is None else math.hypot(a.sc, b.sc)
        hour, theta = clock_hour(right, fwd, m.clock_deg + _angle_sigma_deg(m.uncertainty_k * sigma, dist))
        if hour is None:
            continue
        q: dict = {"right": ctx.fmt(right), "fwd": ctx.fmt(fwd), "theta": f"{theta:.0f}", "hour": hour}
        if a is not None:
            ctx.obj(q, "a", a)
        ctx.obj(q, "b", b)
        return ctx.new("direction_clock", variant, "open", objs, q, hour, "o'clock", {"viewpoint": vp})
    return None


# -- three or more objects --------------------------------------------------------------

_CRITERIA = {
    "camera_distance": (lambda o: o.r, "distance"),
    "volume": (lambda o: o.V, "volume"),
    "height": (lambda o: o.h, "size"),
}


def multi_order(ctx: Ctx):
    s, rng = ctx.scene, ctx.rng
    if len(s.referable) < 3:
        return None
    for _ in range(ctx.config.attempts):
        k = 4 if len(s.referable) >= 4 and rng.random() < 0.3 else 3
        objs = rng.sample(s.referable, k)
        criterion = rng.choice(tuple(_CRITERIA))
        direction = rng.choice(("ascending", "descending"))
        sig = ("multi_order", criterion, frozenset(o.oid for o in objs))
        if sig in ctx.used:
            continue
        ctx.used.add(sig)
        key, kind = _CRITERIA[criterion]
        order = sorted(objs, key=key, reverse=direction == "descending")
        if not all(s.is_separated(key(p) - key(n), max(key(p), key(n)), kind, s.uncertainty(criterion, p, n))
                   for p, n in zip(order, order[1:])):
            continue
        fmt = ctx.fmt_vol if criterion == "volume" else ctx.fmt
        q = {"names": [o.ref[0] for o in objs], "boxes": [s.bbox(o) for o in objs],
             "centres": [ctx.centre(o) for o in objs] if ctx.n3d else None,
             "criterion": criterion, "direction": direction,
             "measures": [fmt(key(o)) for o in objs],
             "order_names": [o.ref[0] for o in order], "order_values": [fmt(key(o)) for o in order]}
        params = {"criterion": criterion, "direction": direction}
        return ctx.new("multi_order", "order", "open", objs, q, [o.oid for o in order], None, params)
    return None


def multi_extreme(ctx: Ctx):
    s, rng = ctx.scene, ctx.rng
    if len(s.referable) < 2 or len(s.objects) < 3:
        return None
    for _ in range(ctx.config.attempts):
        x = rng.choice(s.referable)
        extreme = rng.choice(("nearest", "farthest"))
        variant = "choice" if len(s.referable) >= 4 and rng.random() < 0.5 else "open"
        if variant == "choice":
            cands = rng.sample([o for o in s.referable if o is not x], 3)
        else:
            cands = [o for o in s.objects if o is not x]
        sig = ("multi_extreme", variant, extreme, x.oid, frozenset(o.oid for o in cands))
        if sig in ctx.used:
            continue
        ctx.used.add(sig)
        dist = {o.oid: s.distance(x, o) for o in cands}
        ranked = sorted(cands, key=lambda o: dist[o.oid], reverse=extreme == "farthest")
        best, second = ranked[0], ranked[1]
        if best.ref is None or best.oid in s.behind:
            continue
        db, ds = dist[best.oid], dist[second.oid]
        if not s.is_separated(db - ds, max(db, ds), "distance", s.uncertainty("distance", best, second)):
            continue
        q: dict = {"extreme": extreme, "answer": best.ref[0], "answer_dist": ctx.fmt(db)}
        ctx.obj(q, "x", x)
        params = {"extreme": extreme, "anchor": x.oid}
        if variant == "choice":
            q["names"] = [o.ref[0] for o in cands]
            q["dists"] = [ctx.fmt(dist[o.oid]) for o in cands]
            q["boxes"] = [s.bbox(o) for o in cands]
            q["centres"] = [ctx.centre(o) for o in cands] if ctx.n3d else None
            params.update(choice_kind="object", options=[o.oid for o in cands],
                          options_text=[o.ref[0] for o in cands])
            return ctx.new("multi_extreme", "choice", "choice", [x] + cands, q, best.oid, None, params)
        q["box_answer"] = s.bbox(best)
        q["c_answer"] = ctx.centre(best) if ctx.n3d else None
        q["second"] = ctx.fmt(ds)
        return ctx.new("multi_extreme", "open", "open", [x, best], q, best.oid, None, params)
    return None


_RADII_M = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
_RADII_FT = (2, 3, 4, 5, 6, 8, 10, 15)


def multi_count(ctx: Ctx):
    s, rng = ctx.scene, ctx.rng
    if not s.referable or len(s.objects) < 2:
        return None
    imperial = ctx.config.units == "imperial"
    for _ in range(ctx.config.attempts):
        x = rng.choice(s.referable)
        others = [o for o in s.objects if o is not x]
        dists = [s.distance(x, o) for o in others]
        radii = list(_RADII_FT if imperial else _RADII_M)
        rng.shuffle(radii)
        for shown in radii:
            radius_m = shown / FT_PER_M if imperial else float(shown)
            sig = ("multi_count", x.oid, shown)
            if sig in ctx.used:
                continue
            if not all(s.is_separated(d - radius_m, max(d, radius_m), "distance", s.uncertainty("distance", x, o))
                       for d, o in zip(dists, others)):
                continue
            ctx.used.add(sig)
            count = sum(1 for d in dists if d < radius_m)
            q: dict = {"radius": f"{shown:g}", "count": count,
                       "inside": [o.category for o, d in zip(others, dists) if d < radius_m]}
            ctx.obj(q, "x", x)
            params = {"anchor": x.oid, "radius_m": radius_m, "radius_shown": shown, "radius_unit": ctx.unit}
            return ctx.new("multi_count", "within", "count", [x], q, count, None, params)
    return None


# -- viewpoint of an object ---------------------------------------------------------------

def _angle_sigma_deg(sigma_m: float, dist_m: float) -> float:
    """Direction uncertainty (degrees) of a point `dist_m` away known to `sigma_m` (metres);
    clock_hour() then keeps it away from a half-hour boundary (at most 15 degrees: beyond,
    no hour is asked)."""
    return min(15.0, math.degrees(math.atan2(sigma_m, dist_m))) if sigma_m > 0 else 0.0


def _ego(a: Obj, b: Obj, c: Obj):
    """Viewer at a facing b: (view (f_x, f_z), facing length, right and forward offsets of c)."""
    fx, fz = b.x - a.x, b.z - a.z
    n = math.hypot(fx, fz)
    if n == 0.0:
        return None, 0.0, 0.0, 0.0
    view = (fx / n, fz / n)
    right, fwd = view_coords(c.x - a.x, c.z - a.z, view)
    return view, n, right, fwd


def viewpoint_object(ctx: Ctx):
    s, rng, m = ctx.scene, ctx.rng, ctx.m
    if len(s.referable) < 3:
        return None
    for _ in range(ctx.config.attempts):
        a, b, c = rng.sample(s.referable, 3)
        variant = rng.choice(("yes_no", "choice_relation", "clock"))
        axis = rng.choice(("side", "ahead")) if variant != "clock" else "clock"
        sig = ("viewpoint_object", variant, axis, a.oid, frozenset((b.oid, c.oid)))
        if sig in ctx.used:
            continue
        ctx.used.add(sig)
        view, n, right, fwd = _ego(a, b, c)
        if n < m.position_m:
            continue
        if variant == "clock":
            dist = math.hypot(right, fwd)
            if dist < m.position_m:
                continue
            sigma = m.uncertainty_k * math.hypot(a.sc, c.sc)
            hour, theta = clock_hour(right, fwd, m.clock_deg + _angle_sigma_deg(sigma, dist))
            if hour is None:
                continue
            value, unit, form = hour, "o'clock", "open"
            params: dict = {}
        else:
            d = right if axis == "side" else fwd
            if variant == "choice_relation" and axis == "side" and (d < 0) != ctx.want_left():
                b, c = c, b  # facing the other object flips the side (antisymmetry of the 2D cross product)
                view, n, right, fwd = _ego(a, b, c)
                if n < m.position_m:
                    continue
                d = right
            if not s.is_separated(d, max(a.r, c.r), "position", math.hypot(a.sc, c.sc)):
                continue
            pos, neg = EGO_AXES[axis]
            holds = pos if d > 0 else neg
            if variant == "yes_no":
                want = ctx.want_yes()
                rel = holds if want else (neg if holds == pos else pos)
                value, unit, form = want, None, "yes_no"
                params = {"relation": rel}
            else:
                options = [pos, neg] if rng.random() < 0.5 else [neg, pos]
                value, unit, form = holds, None, "choice"
                rel = None
                params = {"choice_kind": "relation", "axis": axis, "options": options, "options_text": options}
        q: dict = {"fx": f"{view[0]:.2f}", "fz": f"{view[1]:.2f}", "right": ctx.fmt(right), "fwd": ctx.fmt(fwd),
                   "axis": axis}
        if variant == "clock":
            q.update(hour=hour, theta=f"{theta:.0f}")
        else:
            q.update(holds=holds, relation=rel, options=params.get("options"))
        ctx.obj(q, "a", a)
        ctx.obj(q, "b", b)
        ctx.obj(q, "c", c)
        params["viewpoint"] = {"type": "object", "at": a.oid, "facing": b.oid}
        return ctx.new("viewpoint_object", variant, form, [a, b, c], q, value, unit, params)
    return None


FAMILY_BUILDERS = {
    "detection": detection,
    "grounding": grounding,
    "relation_position": relation_position,
    "relation_size": relation_size,
    "metric_distance": metric_distance,
    "metric_object": metric_object,
    "direction_clock": direction_clock,
    "multi_order": multi_order,
    "multi_extreme": multi_extreme,
    "multi_count": multi_count,
    "viewpoint_opposite": viewpoint_opposite,
    "viewpoint_object": viewpoint_object,
}

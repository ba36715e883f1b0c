"""The numba kernels of lifting.lift.fit against the numpy/scipy code they replaced.

The `ref_*` functions are the library's implementation before the kernels, kept verbatim as
the specification. Additions: `ref_front_outline(..., canonical=True)` starts the outline
at the first vertex of the camera-facing chain, as the kernel does (scipy's qhull starts
its vertex cycle at an arbitrary vertex, and the uniform samples along the chain start
there); `ref_footprint_rect(..., sweep=)` reports the closeness values; `ref_side_points`
is fit_box's former selection of the side points. Inputs: random footprints drawn by
hypothesis (rectangles face-on and at a corner, arcs, blobs, duplicates, collinear points,
N from 3 to 5000) and the real footprints that `lift_image` fits on fixed-seed synthetic
scenes.

The order statistics and the sweep repeat numpy's operations in numpy's order (pairwise
sums included), so they agree to the last bit where numpy's cos/sin are the C library's;
the asserted tolerance is 1e-9 (radians, metres), and a different sweep angle is accepted
only at a genuine tie of the reference's closeness. The one intended difference: points on
a line (to rounding) get no circle, where lstsq returned a minimum-norm one.
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial import ConvexHull, QhullError

from lifting.boxes import gravity_frame
from lifting.lift import fit
from lifting.lift.config import LiftConfig

CFG = LiftConfig()
TOL = 1e-9
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------
# references: the numpy/scipy implementation the kernels replace


def ref_quantiles(x: np.ndarray, lo_pct: float, hi_pct: float) -> tuple[float, float]:
    n = len(x)
    i = min(n - 1, max(0, int(round(lo_pct / 100.0 * (n - 1)))))
    j = min(n - 1, max(0, int(round(hi_pct / 100.0 * (n - 1)))))
    p = np.partition(x, (i, j))
    return float(p[i]), float(p[j])


def ref_extents(xz: np.ndarray, angles: np.ndarray, trim_pct: float):
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    pa = c * xz[:, 0] + s * xz[:, 1]  # (A, N)
    pb = -s * xz[:, 0] + c * xz[:, 1]
    qa = [ref_quantiles(row, trim_pct, 100 - trim_pct) for row in pa]
    qb = [ref_quantiles(row, trim_pct, 100 - trim_pct) for row in pb]
    lo_a, hi_a = np.array([q[0] for q in qa]), np.array([q[1] for q in qa])
    lo_b, hi_b = np.array([q[0] for q in qb]), np.array([q[1] for q in qb])
    return lo_a, hi_a, lo_b, hi_b, pa, pb


def ref_closeness(xz: np.ndarray, angles: np.ndarray, d0: float) -> np.ndarray:
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    pa = c * xz[:, 0] + s * xz[:, 1]  # (A, N)
    pb = -s * xz[:, 0] + c * xz[:, 1]
    lo_a, hi_a = pa.min(axis=1), pa.max(axis=1)
    lo_b, hi_b = pb.min(axis=1), pb.max(axis=1)
    da = np.minimum(np.abs(pa - lo_a[:, None]), np.abs(hi_a[:, None] - pa))
    db = np.minimum(np.abs(pb - lo_b[:, None]), np.abs(hi_b[:, None] - pb))
    return (1.0 / np.maximum(np.minimum(da, db), d0)).sum(axis=1)


def ref_footprint_rect(xz: np.ndarray, trim_pct: float, max_points: int = 200, *, sweep: list | None = None):
    """The reference; `sweep` (a list) receives (angles, closeness, argmax) of each stage."""
    sweep = [] if sweep is None else sweep
    pts = xz[:: max(1, int(np.ceil(len(xz) / max_points)))]
    r = np.linalg.norm(pts - np.median(pts, axis=0), axis=1)
    pts = pts[r <= ref_quantiles(r, 0.0, 100 - trim_pct)[1]] if len(pts) > 20 else pts
    span = np.ptp(pts, axis=0).max()
    d0 = max(0.005, 0.01 * span)
    best = 0.0
    for k, offsets in enumerate((np.arange(0.0, 90.0, 5.0), np.arange(-4.0, 4.01, 1.0), np.arange(-0.75, 0.76, 0.25))):
        angles = (0.0 if k == 0 else best) + np.radians(offsets)
        close = ref_closeness(pts, angles, d0)
        sweep.append((angles, close, int(np.argmax(close))))
        best = angles[int(np.argmax(close))]
    th = float(best % (math.pi / 2))
    lo_a, hi_a, lo_b, hi_b, _, _ = ref_extents(xz, np.array([th]), trim_pct)
    a = np.array([math.cos(th), math.sin(th)])
    b = np.array([-a[1], a[0]])
    center = a * (lo_a[0] + hi_a[0]) / 2 + b * (lo_b[0] + hi_b[0]) / 2
    return th, center, np.array([hi_a[0] - lo_a[0], hi_b[0] - lo_b[0]])


def ref_side_points(pg: np.ndarray, y_min: float) -> np.ndarray:
    sides = pg[:, 1] > y_min
    return pg[sides][:, [0, 2]] if sides.sum() >= 10 else pg[:, [0, 2]]


def ref_fit_circle(xz: np.ndarray):
    if len(xz) < 10:
        return None
    A = np.column_stack([xz, np.ones(len(xz))])
    b = -(xz ** 2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(A, b, rcond=None)
    c = -sol[:2] / 2
    r2 = c @ c - sol[2]
    if not np.isfinite(r2) or r2 <= 0:
        return None
    r = math.sqrt(r2)
    res = np.linalg.norm(xz - c, axis=1) - r
    return c, r, float(np.sqrt(np.mean(res ** 2)))


def ref_front_outline(xz: np.ndarray, n_samples: int = 64, max_points: int = 250, *, canonical: bool = False):
    xz = xz[:: max(1, int(np.ceil(len(xz) / max_points)))]
    try:
        v = xz[ConvexHull(xz).vertices]  # counter-clockwise
    except (QhullError, ValueError):
        return None
    e = np.roll(v, -1, axis=0) - v
    normal = np.stack([e[:, 1], -e[:, 0]], axis=1)  # outward for a ccw polygon
    mid = v + e / 2
    front = np.einsum("ij,ij->i", normal, mid) < 0  # faces the camera at the origin
    if front.sum() < 2:
        return None
    if canonical:  # start the cycle at the first vertex of the camera-facing chain
        starts = np.flatnonzero(front & ~np.roll(front, 1))
        k0 = int(starts[0]) if len(starts) else 0
        v, e, front = np.roll(v, -k0, axis=0), np.roll(e, -k0, axis=0), np.roll(front, -k0)
    length = np.linalg.norm(e, axis=1) * front
    s = np.linspace(0, length.sum(), n_samples, endpoint=False)
    cum = np.concatenate([[0.0], np.cumsum(length)])
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(v) - 1)
    t = (s - cum[k]) / np.where(length[k] > 0, length[k], 1.0)
    return v[k] + t[:, None] * e[k]


def ref_is_round(xz: np.ndarray, extents: np.ndarray, cfg: LiftConfig, *, canonical: bool = True):
    outline = ref_front_outline(xz, canonical=canonical)
    if outline is None:
        return None
    fc = ref_fit_circle(outline)
    if fc is None:
        return None
    c, r, rms = fc
    if rms > cfg.round_residual * r or r > 1.2 * max(extents.max(), 1e-6) or r < 0.2 * extents.max():
        return None
    rel = outline - c
    ang = np.arctan2(rel[:, 1], rel[:, 0])
    lo, hi = ref_quantiles(ang, 2, 98)
    span = hi - lo
    if np.linalg.norm(c) <= np.linalg.norm(xz.mean(axis=0)) or span < math.radians(60):
        return None
    return c, r


# ---------------------------------------------------------------------------------------
# inputs


def footprint(kind: str, n: int, seed: int) -> np.ndarray:
    """(n, 2) gravity-frame (x, z) points of one kind of footprint, 1-10 m in front of the camera."""
    rng = np.random.default_rng(seed)
    dist = rng.uniform(1.0, 10.0)
    bearing = rng.uniform(-0.6, 0.6)
    origin = dist * np.array([math.sin(bearing), math.cos(bearing)])
    yaw = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    w, l_ = rng.uniform(0.05, 3.0, size=2)
    noise = rng.choice([0.0, 1e-4, 3e-3, 2e-2])
    if kind == "face":  # one face of a box, seen face-on: a segment (with depth noise)
        p = np.column_stack([rng.uniform(-w / 2, w / 2, n), np.full(n, -l_ / 2)])
        p = p @ rot.T if rng.random() < 0.5 else p
    elif kind == "corner":  # two faces meeting at a corner: an L
        t = rng.uniform(0, w + l_, n)
        p = np.where((t < w)[:, None], np.column_stack([t - w / 2, np.full(n, -l_ / 2)]),
                     np.column_stack([np.full(n, w / 2), t - w - l_ / 2]))
        p = p @ rot.T
    elif kind == "arc":  # the front of a cylinder
        r = w / 2
        span = rng.uniform(math.radians(30), math.radians(300))
        a = -math.pi / 2 + bearing + rng.uniform(-span / 2, span / 2, n)
        p = r * np.column_stack([np.cos(a), np.sin(a)])
    elif kind == "blob":
        p = rng.normal(size=(n, 2)) * [w / 4, l_ / 4]
    elif kind == "duplicates":  # n points drawn from n // 7 distinct ones
        distinct = rng.normal(size=(max(1, n // 7), 2)) * w
        p = distinct[rng.integers(0, len(distinct), n)]
    elif kind == "collinear":  # on a line (x, 2x + d) or (x, d), to rounding: a flat hull
        x = rng.uniform(-w, w, n)
        p = np.column_stack([x, 2 * x]) if rng.random() < 0.5 else np.column_stack([x, np.zeros(n)])
        return p + np.array([0.0, dist])
    else:
        raise ValueError(kind)
    p = p if kind == "duplicates" else p + noise * rng.normal(size=p.shape)
    return p + origin


KINDS = ["face", "corner", "arc", "blob", "duplicates", "collinear"]


@st.composite
def footprints(draw, kinds=KINDS, max_n: int = 5000):
    kind = draw(st.sampled_from(kinds))
    n = draw(st.one_of(st.integers(3, 60), st.integers(3, max_n)))
    return kind, footprint(kind, n, draw(st.integers(0, 2 ** 32 - 1)))


@lru_cache(maxsize=None)
def real_fits() -> list:
    """[(xyz_cam, gravity_cam, kwargs)] of every fit_box call of lift_image on fixed-seed
    synthetic scenes (sensor-like noise with occlusion, and exact depth)."""
    import lifting.lift.core as core
    from lifting.synthetic import NoiseConfig, SceneConfig, generate_scene
    from synthetic_helpers import lift_scene

    calls = []
    inner = core.fit_box

    def spy(*a, **kw):
        calls.append((a[0].copy(), np.array(a[1], dtype=np.float64), a[2], kw))
        return inner(*a, **kw)

    core.fit_box = spy
    try:
        for seed, noisy in [(s, True) for s in range(10)] + [(100 + s, False) for s in range(4)]:
            sc = generate_scene(seed, SceneConfig(occlusion=noisy), NoiseConfig.realistic() if noisy else None)
            lift_scene(sc, seed, masks=True, min_visible=50)
    finally:
        core.fit_box = inner
    return calls


def side_footprint(xyz_cam: np.ndarray, gravity_cam: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """The (N, 2) footprint points fit_box fits (its first lines, the floor snap left out)."""
    pg = xyz_cam @ gravity_frame(gravity_cam)
    top, bottom = ref_quantiles(pg[:, 1], cfg.trim_pct, 100 - cfg.trim_pct)
    return ref_side_points(pg, top + 0.05 * max(bottom - top, 1e-3))


# ---------------------------------------------------------------------------------------
# comparisons


def assert_rect_matches(xz: np.ndarray, trim_pct: float, max_points: int = 200):
    sweep = []
    th_r, c_r, e_r = ref_footprint_rect(xz, trim_pct, max_points, sweep=sweep)
    th, c, e = fit.footprint_rect(xz, trim_pct, max_points)
    if abs(th - th_r) > TOL:  # only a tie of the reference's closeness may pick another angle
        close = np.concatenate([s[1] for s in sweep])
        assert np.isclose(close.max(), np.sort(close)[-2], rtol=1e-12, atol=0), (th, th_r)
        return
    np.testing.assert_allclose(c, c_r, rtol=0, atol=TOL)
    np.testing.assert_allclose(e, e_r, rtol=0, atol=TOL)


def assert_round_matches(xz: np.ndarray, extents: np.ndarray, cfg: LiftConfig = CFG):
    ref = ref_is_round(xz, extents, cfg)
    got = fit._is_round(xz, extents, cfg)
    assert (got is None) == (ref is None)
    if ref is not None:
        np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=TOL)
        assert abs(got[1] - ref[1]) <= TOL


@given(st.one_of(st.lists(st.integers(-5, 5), min_size=1, max_size=300),
                 st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300)),
       st.floats(0, 100), st.floats(0, 100))
@SETTINGS
def test_quantiles_are_the_partition_order_statistics(values, lo, hi):
    x = np.array(values, dtype=np.float64)
    assert fit.quantiles(x, lo, hi) == ref_quantiles(x, lo, hi)


def test_quantiles_at_fixed_percentiles_and_sorted_inputs():
    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 7, 100, 3001]:
        for x in (rng.normal(size=n), np.sort(rng.normal(size=n)), np.round(rng.normal(size=n), 1), np.zeros(n)):
            for lo, hi in [(0.5, 99.5), (2, 98), (10, 90), (0, 100), (50, 50), (90, 10)]:
                assert fit.quantiles(x, lo, hi) == ref_quantiles(x, lo, hi)
    assert fit.quantiles([3, 1, 2], 0, 100) == (1.0, 3.0)  # any 1-D array-like, any dtype
    with pytest.raises(ValueError):
        fit.quantiles(np.zeros(0), 10, 90)


@given(footprints(), st.sampled_from([0.0, 0.5, 2.0]), st.sampled_from([200, 50]))
@SETTINGS
def test_footprint_rect_matches_reference(fp, trim_pct, max_points):
    _, xz = fp
    assert_rect_matches(xz, trim_pct, max_points)


@given(footprints(kinds=["blob", "arc", "corner"], max_n=500))
@SETTINGS
def test_hull_is_qhulls_counter_clockwise_cycle(fp):
    _, xz = fp
    xz = xz + 1e-3 * np.random.default_rng(len(xz)).normal(size=xz.shape)  # general position
    try:
        ref = ConvexHull(xz).vertices
    except QhullError:
        return
    got = fit._hull(xz)
    assert sorted(got) == sorted(ref)
    k = int(np.flatnonzero(ref == got[0])[0])
    np.testing.assert_array_equal(np.roll(ref, -k), got)  # the same cycle, the same direction
    assert got[0] == np.lexsort((xz[:, 1], xz[:, 0]))[0]  # starting at the lexicographic minimum


@given(footprints(max_n=2000))
@SETTINGS
def test_front_outline_matches_reference(fp):
    kind, xz = fp
    ref = ref_front_outline(xz, canonical=True)
    got = fit._front_outline(xz, 64, 250)
    if kind == "collinear":
        assert ref is None
    if ref is None:  # qhull refused a flat input, or no edge faces the camera
        assert len(got) == 0
        return
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL)


@given(footprints(kinds=["arc", "corner", "blob"], max_n=300))
@SETTINGS
def test_fit_circle_matches_lstsq(fp):
    _, xz = fp
    ref, got = ref_fit_circle(xz), fit.fit_circle(xz)
    sv = np.linalg.svd(xz - xz.mean(axis=0), compute_uv=False)
    if sv[-1] < 1e-6 * sv[0]:  # on a line (to rounding): lstsq's minimum-norm "circle" is noise
        assert got is None
        return
    assert (got is None) == (ref is None)
    if ref is not None:
        scale = max(1.0, ref[1])  # absolute metres for radii up to 1 m, relative beyond
        np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=TOL * scale)
        assert abs(got[1] - ref[1]) <= TOL * scale
        assert abs(got[2] - ref[2]) <= TOL * scale


def test_fit_circle_of_collinear_points_is_none():
    x = np.linspace(0.0, 1.0, 20)
    assert fit.fit_circle(np.column_stack([x, 2 * x + 3])) is None  # lstsq gave a minimum-norm "circle"
    assert fit.fit_circle(np.zeros((20, 2))) is None
    assert fit.fit_circle(np.ones((9, 2))) is None  # fewer than 10 points


@given(footprints(kinds=["arc", "corner", "face", "blob"], max_n=2000))
@SETTINGS
def test_is_round_matches_reference(fp):
    _, xz = fp
    _, _, ext = ref_footprint_rect(xz, CFG.trim_pct)
    assert_round_matches(xz, ext)


def test_fixed_shapes_round_decision():
    """A cylinder's front arc is round (its circle that of the hull's chords); an L and a single
    face are not."""
    for xz in (footprint("corner", 400, 1), footprint("face", 400, 2)):
        _, _, ext = fit.footprint_rect(xz, CFG.trim_pct)
        assert fit._is_round(xz, ext, CFG) is None
    rng = np.random.default_rng(0)
    a = -math.pi / 2 + rng.uniform(-1.2, 1.2, 300)
    arc = np.column_stack([0.3 * np.cos(a), 4.0 + 0.3 * np.sin(a)])
    got, ref = fit._is_round(arc, np.array([0.6, 0.6]), CFG), ref_is_round(arc, np.array([0.6, 0.6]), CFG)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=TOL)
    np.testing.assert_allclose(got[0], [0.0, 4.0], rtol=0, atol=1e-4)
    assert abs(got[1] - 0.3) < 1e-4


def test_inputs_are_normalised_to_one_specialisation():
    xyz = np.column_stack([footprint("corner", 300, 5), np.zeros(300)])[:, [0, 2, 1]]
    xz = np.ascontiguousarray(xyz[:, ::2])
    ref = fit.footprint_rect(xz, 0.5)
    for other in (xyz[:, ::2], np.asfortranarray(xz), xz.tolist()):  # strided, Fortran, a list
        got = fit.footprint_rect(other, 0.5)
        assert got[0] == ref[0] and np.array_equal(got[1], ref[1]) and np.array_equal(got[2], ref[2])
    assert fit.footprint_rect(xz, 1)[0] == fit.footprint_rect(xz, 1.0)[0]  # an int trim_pct
    with pytest.raises(ValueError):
        fit.footprint_rect(np.zeros((0, 2)), 0.5)
    assert len(fit._footprint_rect.signatures) == 1


# ---------------------------------------------------------------------------------------
# real footprints of lift_image


def test_real_footprints_match_reference():
    calls = real_fits()
    assert len(calls) > 40
    n_round = 0
    for xyz, g, cfg, _ in calls:
        xz = side_footprint(xyz, g, cfg)
        pg = xyz @ gravity_frame(g)
        for y_min in np.quantile(pg[:, 1], [0.0, 0.3, 0.999, 1.0]):
            np.testing.assert_array_equal(fit._side_points(pg, y_min), ref_side_points(pg, y_min))
        assert_rect_matches(xz, cfg.trim_pct)
        _, _, ext = ref_footprint_rect(xz, cfg.trim_pct)
        if ext.min() >= 0.2 * ext.max():
            assert_round_matches(xz, ext, cfg)
            n_round += ref_is_round(xz, ext, cfg) is not None
    assert n_round > 5


def test_real_round_decisions_match_qhulls_start_too():
    """Against the reference as it was (the outline starting wherever qhull's cycle does):
    the same round decisions, and circles that move by the offset of the samples only."""
    worst = 0.0
    for xyz, g, cfg, _ in real_fits():
        xz = side_footprint(xyz, g, cfg)
        _, _, ext = ref_footprint_rect(xz, cfg.trim_pct)
        if ext.min() < 0.2 * ext.max():
            continue
        ref, got = ref_is_round(xz, ext, cfg, canonical=False), fit._is_round(xz, ext, cfg)
        assert (got is None) == (ref is None)
        if ref is not None:
            worst = max(worst, float(np.abs(got[0] - ref[0]).max()) / ref[1])
    assert worst < 0.05  # the centre moves by < 5 % of the radius


def test_fit_box_matches_reference_on_real_objects(monkeypatch):
    """The whole fit_box, kernels against the references (patched into the module)."""
    calls = real_fits()
    got = [fit.fit_box(xyz, g, cfg, **kw) for xyz, g, cfg, kw in calls]
    monkeypatch.setattr(fit, "quantiles", ref_quantiles)
    monkeypatch.setattr(fit, "footprint_rect", ref_footprint_rect)
    monkeypatch.setattr(fit, "_is_round", ref_is_round)
    monkeypatch.setattr(fit, "_side_points", ref_side_points)
    ref = [fit.fit_box(xyz, g, cfg, **kw) for xyz, g, cfg, kw in calls]
    for a, b in zip(got, ref):
        assert (a.round, a.completed) == (b.round, b.completed)
        np.testing.assert_allclose(a.box.center_cam, b.box.center_cam, rtol=0, atol=TOL)
        np.testing.assert_allclose(a.box.dimensions, b.box.dimensions, rtol=0, atol=TOL)
        np.testing.assert_allclose(a.box.R_cam, b.box.R_cam, rtol=0, atol=TOL)
        np.testing.assert_allclose(a.observed_dims, b.observed_dims, rtol=0, atol=TOL)
        assert abs(a.visible_fraction - b.visible_fraction) <= TOL


def test_fit_box_without_floor_or_prior_matches_reference(monkeypatch):
    calls = real_fits()[:40]
    cfg = replace(CFG, complete_with_priors=False, trim_pct=2.0)
    got = [fit.fit_box(xyz, g, cfg) for xyz, g, _, _ in calls]
    monkeypatch.setattr(fit, "quantiles", ref_quantiles)
    monkeypatch.setattr(fit, "footprint_rect", ref_footprint_rect)
    monkeypatch.setattr(fit, "_is_round", ref_is_round)
    monkeypatch.setattr(fit, "_side_points", ref_side_points)
    for a, (xyz, g, _, _) in zip(got, calls):
        b = fit.fit_box(xyz, g, cfg)
        assert a.round == b.round
        np.testing.assert_allclose(a.box.corners(), b.box.corners(), rtol=0, atol=TOL)

"""Gravity ("down" in the camera frame) and the floor plane of an image.

Order of trust: a dataset-provided gravity, else the normal of a floor plane found by
RANSAC on the image's points, else the upright-camera default [0, 1, 0]. With a given
gravity the floor offset is still searched (1-D), so that boxes can snap to the floor.

RANSAC is vectorised numpy rather than Open3D's `segment_plane` because the floor needs
constraints Open3D does not take: a normal near the prior "down", and almost no point
below the plane (the floor is the lowest large plane, not a wall or table top). Hypotheses
are scored by a numba kernel (`_score_kernel`, compiled on first use and cached on disk):
numpy's (points x hypotheses) distance matrix, a K=3 matrix product, and the passes over it
cost 0.5-1.5 ms per RANSAC; the numpy reference is in tests/test_lift_gravity_kernels.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from lifting.lift.config import LiftConfig

UPRIGHT = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class Floor:
    """Plane n . p = d in the camera frame; n is unit "down" (gravity), d > 0 the camera height.

    `profile`: the ground's height relative to that plane by horizontal distance from the
    camera, ((distance m, height m), ...) increasing in distance (`ground_profile`): a road
    is rarely one plane over 60 m (crowns, dips, a slope starting at 20 m), and the plane
    fitted where the points are densest (the first 10 m) misses a far ground by 0.2-0.5 m,
    which moves a far object's floor contact by 10-25 %. Empty: the plane everywhere. The
    profile places contacts and separates points from the ground (`contact`,
    `height_above`); boxes still snap to the plane (lifting.lift.core)."""

    normal: np.ndarray  # (3,)
    offset: float  # metres
    support: float  # inlier fraction of the sampled valid points
    profile: tuple = ()

    def ground_offset(self, distance):
        """The plane offset of the ground at horizontal `distance` (metres; scalar or array):
        `offset` minus the profile's height there (held beyond its last band)."""
        if not self.profile:
            return self.offset if np.isscalar(distance) else np.full(np.shape(distance), self.offset)
        dist, dh = zip(*self.profile)
        v = self.offset - np.interp(distance, (0.0,) + dist, (0.0,) + dh)
        return float(v) if np.isscalar(distance) else v

    def height_above(self, xyz_cam: np.ndarray) -> np.ndarray:
        """(...,) height of points (..., 3) above the ground, metres (positive above)."""
        along = xyz_cam @ self.normal
        if not self.profile:
            return self.offset - along
        return self.ground_offset(_horizontal(xyz_cam, along)) - along

    def scaled(self, s: float) -> "Floor":
        """The same floor in a depth map multiplied by `s` (every point moves along its ray)."""
        return Floor(self.normal, self.offset * s, self.support, tuple((d * s, h * s) for d, h in self.profile))

    def contact(self, ray: np.ndarray) -> float | None:
        """z (metres) where a camera ray (3,) first meets the ground, or None when it points
        above the horizon (beyond the profile's last band the ground is flat: a ray pointing
        down meets it somewhere).

        Along the ray, the drop below the camera grows as k = down / horizontal times the
        horizontal distance r, and the ground lies at `ground_offset(r)`, piecewise linear
        in r: the first crossing is solved exactly, one piece at a time."""
        down = float(ray @ self.normal)
        if down <= 1e-6:
            return None
        if not self.profile:
            return float(self.offset / down * ray[2])
        hz = math.sqrt(max(float(ray @ ray) - down * down, 1e-18))
        k = down / hz
        knots = [0.0] + [float(d) for d, _ in self.profile]
        g = [self.ground_offset(r) for r in knots]
        for i in range(len(knots)):
            r0, g0 = knots[i], g[i]
            # piece i: from knot i to the next one, or flat beyond the last
            slope = (g[i + 1] - g0) / (knots[i + 1] - r0) if i + 1 < len(knots) else 0.0
            if k - slope <= 0:
                continue  # the ray does not gain on the ground here
            r = r0 + (g0 - k * r0) / (k - slope)
            if r >= r0 and (i + 1 == len(knots) or r <= knots[i + 1]):
                return float(r / hz * ray[2])
        return None


def _horizontal(xyz: np.ndarray, along: np.ndarray) -> np.ndarray:
    """(...,) horizontal distance from the camera of points (..., 3) whose component along
    the floor normal is `along`."""
    return np.sqrt(np.maximum(np.einsum("...i,...i->...", xyz, xyz) - along * along, 0.0))


def ground_profile(p: np.ndarray, floor: Floor, cfg: LiftConfig) -> tuple:
    """((distance, height), ...): the ground's height relative to `floor`'s plane in bands of
    horizontal distance (`ground_bands_m`), each the median height of the points near the
    previous band's ground (within 0.1 m + 1 % of the distance, then half that around the
    first median: objects standing on the ground and what lies below a kerb drop out), for
    bands with at least `ground_min_points` such points. p: (N, 3) camera-frame points."""
    along = p @ floor.normal
    h = floor.offset - along
    dist = _horizontal(p, along)
    edges = sorted(set(float(e) for e in cfg.ground_bands_m))  # increasing, whatever the config says
    out, prev = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = (dist >= lo) & (dist < hi)
        tol = 0.1 + 0.01 * 0.5 * (lo + hi)
        near = h[band & (np.abs(h - prev) < tol)]
        if len(near) < cfg.ground_min_points:
            continue
        v = float(np.median(near))
        tight = h[band & (np.abs(h - v) < 0.5 * tol)]
        if len(tight) >= cfg.ground_min_points:
            v = float(np.median(tight))
        out.append((float(np.median(dist[band])), v))
        prev = v
    return tuple(out)


@dataclass(frozen=True)
class GravityEstimate:
    gravity_cam: np.ndarray  # (3,) unit
    source: str  # dataset | floor_plane | upright_default
    floor: Floor | None


def _sample_points(xyz: np.ndarray, valid: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.flatnonzero(valid.ravel())
    if len(idx) > n:
        idx = rng.choice(idx, n, replace=False)
    return xyz.reshape(-1, 3)[idx].astype(np.float64)


def _inlier_tol(p: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    return cfg.floor_inlier_m + cfg.floor_inlier_rel * p[:, 2]


def _refine(p: np.ndarray, n: np.ndarray, d: float, cfg: LiftConfig) -> tuple[np.ndarray, float]:
    """Least-squares plane through the inliers of (n, d), normal oriented like n."""
    inl = p[np.abs(p @ n - d) < _inlier_tol(p, cfg)]
    if len(inl) < 10:
        return n, d
    c = inl.mean(axis=0)
    _, _, vt = np.linalg.svd(inl - c, full_matrices=False)
    m = vt[-1]
    if m @ n < 0:
        m = -m
    return m, float(m @ c)


def _score(p: np.ndarray, n: np.ndarray, d: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """(M,) inlier counts of planes (n_i, d_i), (M, 3) and (M,), over points p (P, 3): the
    points within `_inlier_tol` of the plane; zero where 2 % or more of the points lie more
    than three tolerances below it (farther along gravity)."""
    p = np.ascontiguousarray(p, dtype=np.float64)
    return _score_kernel(p, np.ascontiguousarray(n, dtype=np.float64), np.ascontiguousarray(d, dtype=np.float64),
                         _inlier_tol(p, cfg))


@njit(cache=True, nogil=True)
def _score_kernel(p, n, d, tol):  # numba: numpy's (P, M) passes cost ~0.5-1.5 ms per RANSAC
    """`_score` with the points' tolerances `tol` (P,). A hypothesis stops being scored once
    2 % of the points lie below it (its score is zero whatever the rest holds)."""
    n_pts, m = p.shape[0], n.shape[0]
    out = np.zeros(m, np.int64)
    for j in range(m):
        nx, ny, nz, dj = n[j, 0], n[j, 1], n[j, 2], d[j]
        inl = 0
        below = 0
        ok = n_pts > 0  # numpy's mean over no points is NaN: no score
        for i in range(n_pts):
            dist = p[i, 0] * nx + p[i, 1] * ny + p[i, 2] * nz - dj  # positive = below the plane
            t = tol[i]
            if abs(dist) < t:
                inl += 1
            elif dist > 3 * t:
                below += 1
                if below / n_pts >= 0.02:
                    ok = False
                    break
        if ok:
            out[j] = inl
    return out


def find_floor(xyz: np.ndarray, valid: np.ndarray, cfg: LiftConfig, gravity_cam=None,
               seed: int = 0, n_points: int = 4000) -> Floor | None:
    """The floor plane of an image, or None when no plausible floor is visible.

    Args:
        xyz: (H, W, 3) camera-frame points (from `lifting.camera.backproject`).
        valid: (H, W) bool, valid depth.
        gravity_cam: when given, the plane's normal is fixed to it and only the offset is
            searched; otherwise the normal is free within `floor_max_tilt_deg` of upright.
    """
    rng = np.random.default_rng(seed)
    p = _sample_points(xyz, valid, n_points, rng)
    if len(p) < 50:
        return None
    if gravity_cam is not None:
        # fixed normal: a 1-D search over the offset with 1 cm histograms, O(points + bins)
        n = np.asarray(gravity_cam, dtype=np.float64)
        n = n / np.linalg.norm(n)
        h = p @ n
        if not np.any(h > 0.2):
            return None
        bins = np.floor(h / 0.01).astype(np.int64)
        lo = int(bins.min())
        counts = np.bincount(bins - lo)
        tol_bins = max(1, int(round((cfg.floor_inlier_m + cfg.floor_inlier_rel * float(np.median(p[:, 2]))) / 0.01)))
        window = np.convolve(counts, np.ones(2 * tol_bins + 1), mode="same")  # inliers per offset
        below = np.cumsum(counts[::-1])[::-1]  # points at or below each bin
        below_strict = np.concatenate([below[3 * tol_bins + 1:], np.zeros(3 * tol_bins + 1)])
        offsets = (np.arange(len(counts)) + lo + 0.5) * 0.01
        ok = (offsets > 0.2) & (below_strict < 0.02 * len(p))
        score = np.where(ok, window, 0)
        best = int(np.argmax(score))
        if score[best] < cfg.floor_min_support * len(p):
            return None
        inl = np.abs(h - offsets[best]) < _inlier_tol(p, cfg)
        d = float(np.median(h[inl]))
        return Floor(n, d, float(inl.mean()))
    # free normal: RANSAC over point triplets, normals within the tilt cone around upright
    lower = p[p[:, 1] > np.median(p[:, 1])] if len(p) > 200 else p
    # hypotheses are ranked on a fixed subsample (the (points x hypotheses) test is the
    # per-image cost); the winner is refined on all points
    ps = p[:: max(1, len(p) // 1000)]
    found = _ransac(lower, ps, cfg, rng)
    if found is None:
        return None
    n1, d1 = found
    # the floor is the *lowest* large plane: a bed or a table top can hold more points than
    # the floor around it and, slightly tilted, still pass the nothing-below test. When
    # enough points lie well below the winner, search them for a plane of their own.
    below = p[(p @ n1 - d1) > 0.15]
    if len(below) >= cfg.floor_min_support * len(p):
        lower_plane = _ransac(below, ps, cfg, rng)
        if lower_plane is not None and lower_plane[1] > d1 + 0.1:
            n1, d1 = lower_plane
    nn, dd = _refine(p, n1, d1, cfg)
    if nn @ UPRIGHT < math.cos(math.radians(cfg.floor_max_tilt_deg)):
        return None
    support = float((np.abs(p @ nn - dd) < _inlier_tol(p, cfg)).mean())
    return Floor(nn, dd, support)


def _ransac(cand: np.ndarray, ps: np.ndarray, cfg: LiftConfig, rng) -> tuple[np.ndarray, float] | None:
    """Best floor hypothesis (normal, offset) from triplets of `cand` (N, 3), scored on `ps`
    (M, 3) by `_score`; None without one within the tilt cone, below the camera, supported."""
    it = cfg.floor_ransac_iters
    tri = cand[rng.integers(0, len(cand), size=(it, 3))]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-9
    n = n[ok] / norm[ok, None]
    tri = tri[ok]
    n *= np.sign(n[:, 1:2] + 1e-12)  # orient "down" (+y)
    keep = n @ UPRIGHT > math.cos(math.radians(cfg.floor_max_tilt_deg))
    n, tri = n[keep], tri[keep]
    d = np.einsum("ij,ij->i", n, tri[:, 0])
    keep = d > 0.2  # below the camera
    n, d = n[keep], d[keep]
    if len(n) == 0:
        return None
    scores = _score(ps, n, d, cfg)
    # near-equal planes: the one nearer upright (a tilted plane through the floor's few
    # points and a bed's or table's can outscore the floor by a point or two; cameras are
    # upright more often than not, 20 degrees costs a third of the score)
    tilt = np.degrees(np.arccos(np.clip(n @ UPRIGHT, -1.0, 1.0)))
    best = int(np.argmax(scores * np.exp(-0.5 * (tilt / cfg.floor_tilt_scale_deg) ** 2)))
    if scores[best] < cfg.floor_min_support * len(ps):
        return None
    return n[best], float(d[best])


def sample_points(depth: np.ndarray, valid: np.ndarray, K: np.ndarray, n: int = 4000, seed: int = 0):
    """(N, 3) camera-frame points of up to `n` random valid pixels of an (H, W) depth map
    (metres): what the floor search needs, without back-projecting the whole image."""
    from lifting.camera import unproject_points

    rng = np.random.default_rng(seed)
    flat = valid.ravel()
    n_valid = int(np.count_nonzero(flat))
    draw = int(1.3 * n * flat.size / max(n_valid, 1)) + 64
    if n_valid <= 2 * n or draw > flat.size // 8:  # few valid pixels: index them all
        idx = np.flatnonzero(flat)
        if len(idx) > n:
            idx = np.sort(rng.choice(idx, n, replace=False))
    else:
        # distinct random pixels, the valid ones kept: O(n) however large the image (an index
        # of every valid pixel cost a memory-bound pass over the whole image)
        idx = rng.choice(flat.size, draw, replace=False)
        idx = np.sort(idx[flat[idx]][:n])
    v, u = np.divmod(idx, depth.shape[1])
    return unproject_points(np.stack([u, v], axis=1), depth.ravel()[idx], K).astype(np.float64)


def estimate_gravity(xyz: np.ndarray, valid: np.ndarray, cfg: LiftConfig, dataset_gravity=None,
                     seed: int = 0) -> GravityEstimate:
    """Gravity per image: dataset > floor plane > upright default (see module docstring).

    Args:
        xyz: (H, W, 3) or (N, 3) camera-frame points; valid: (H, W) or (N,) bool.
    """
    if dataset_gravity is not None:
        g = np.asarray(dataset_gravity, dtype=np.float64)
        g = g / np.linalg.norm(g)
        return GravityEstimate(g, "dataset", _with_profile(find_floor(xyz, valid, cfg, gravity_cam=g, seed=seed),
                                                           xyz, valid, cfg))
    floor = _with_profile(find_floor(xyz, valid, cfg, seed=seed), xyz, valid, cfg)
    if floor is not None:
        return GravityEstimate(floor.normal, "floor_plane", floor)
    return GravityEstimate(UPRIGHT.copy(), "upright_default", None)


def _with_profile(floor: Floor | None, xyz: np.ndarray, valid: np.ndarray, cfg: LiftConfig) -> Floor | None:
    if floor is None or not cfg.ground_bands_m:
        return floor
    p = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)[np.asarray(valid).ravel()]
    return Floor(floor.normal, floor.offset, floor.support, ground_profile(p, floor, cfg))

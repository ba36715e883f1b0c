"""Cleaning of an object's point cloud: voxel grid, statistical outliers, main cluster.

All three steps work on a grid of occupied cubes: integer cube keys in an open-addressing
hash table (O(1) lookups of the 26 neighbours), neighbour counts for the outliers and a
union-find over touching cubes for the clusters, so the whole cleaning is O(N) with no
k-d tree. The steps are compiled numba kernels, run by `clean_points` in one call: for the
<= 3000 points of one object, numpy's per-call overhead (np.unique, searchsorted, bincount,
scipy labelling) cost ~0.9 ms per object, the kernels ~0.12 ms (one core). The kernels are
cached on disk (cache=True): ~9 s CPU to compile once, ~0.5 s numba start-up per process.

Hand-written rather than Open3D: for the few thousand points of one object the Open3D
round trip (tensor conversion, DBSCAN) costs more than the whole cleaning; the baseline
in bench/ measures exactly that.

Exactness: the kernels return the same points in the same order as the numpy/scipy
implementation they replaced (kept in tests/test_lift_cloud_kernels.py as the reference):
cube indices are floor(xyz / edge) computed as numpy did (float32 input: the quotient is
rounded to float32 like numpy's float32 division), the outlier threshold is computed in
float64 with numpy's pairwise summation, and ties between equally large clusters go to
the one with the lexicographically smallest cube (x, then y, then z), as the dense
labelling (raster order) and the sparse graph labelling (sorted keys) both did. Not
supported (as before): NaN or infinite coordinates, and spans beyond ~2e6 cube edges per
axis (the int64 cube keys would overflow). Inputs of other dtypes are computed in float64
(numpy did the same for integers; float16 would differ).
"""
from __future__ import annotations

import numba
import numpy as np
from scipy.spatial import cKDTree

from lifting.lift.config import LiftConfig
from lifting.lift.kernels import pairwise_sum, root, select

#: Fibonacci hashing multiplier (2**64 / golden ratio) for the cube-key hash table.
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


def _as_points(xyz) -> tuple[np.ndarray, bool]:
    """((N, 3) contiguous float64 copy or view of `xyz`, whether it was float32): one numba
    specialisation for every input dtype, float32 arithmetic emulated in the kernels."""
    a = np.asarray(xyz)
    return np.ascontiguousarray(a, dtype=np.float64), a.dtype == np.float32


@numba.njit(cache=True, nogil=True)
def _median_z(xyz, single):  # numba: per-call numpy overhead dominated the small clouds
    """Median of the (N,) column xyz[:, 2] as np.median computes it (N >= 1); `single`:
    the mean of the two middle values rounded to float32 as numpy's float32 mean does."""
    n = xyz.shape[0]
    half = n // 2
    v = xyz[:, 2].copy()
    select(v, 0, n - 1, half)  # v[:half] <= v[half]
    b = v[half]
    if n % 2 == 1:
        return b
    a = v[0]
    for i in range(1, half):
        a = max(a, v[i])
    s = a + b
    if single:
        s = np.float64(np.float32(s))
    return s / 2.0


@numba.njit(cache=True, nogil=True)
def _cube_keys(xyz, edge, single):  # numba: per-call numpy overhead dominated the small clouds
    """(int64 keys (N,), stride d1, stride d2) of the cubes of edge `edge` metres holding the
    (N, 3) points: cube coordinates floor(xyz / edge) shifted to start at 1, with a free
    layer beyond the maximum, key = (q0 * d1 + q1) * d2 + q2. A neighbour's key is the key
    plus a constant (no bounds checks) and key order is lexicographic (x, y, z) order.
    `single`: divide as numpy does for float32 input (edge and quotient rounded to float32)."""
    n = xyz.shape[0]
    q = np.empty((n, 3), dtype=np.int64)
    if single:
        e = np.float64(np.float32(edge))
        for i in range(n):
            for a in range(3):
                q[i, a] = np.int64(np.floor(np.float64(np.float32(xyz[i, a] / e))))
    else:
        for i in range(n):
            for a in range(3):
                q[i, a] = np.int64(np.floor(xyz[i, a] / edge))
    l0 = h0 = q[0, 0]
    l1 = h1 = q[0, 1]
    l2 = h2 = q[0, 2]
    for i in range(1, n):
        l0, h0 = min(l0, q[i, 0]), max(h0, q[i, 0])
        l1, h1 = min(l1, q[i, 1]), max(h1, q[i, 1])
        l2, h2 = min(l2, q[i, 2]), max(h2, q[i, 2])
    d1 = h1 - l1 + 3
    d2 = h2 - l2 + 3
    shift = ((l0 - 1) * d1 + (l1 - 1)) * d2 + (l2 - 1)  # coordinates start at 1
    keys = np.empty(n, dtype=np.int64)
    for i in range(n):
        keys[i] = (q[i, 0] * d1 + q[i, 1]) * d2 + q[i, 2] - shift
    return keys, d1, d2


@numba.njit(cache=True, nogil=True)
def _slot(key, shift):
    """Home slot of `key` in a table of 2**(64 - shift) slots (Fibonacci hashing)."""
    return np.int64((np.uint64(key) * _HASH_MUL) >> np.uint64(shift))


@numba.njit(cache=True, nogil=True)
def _hash_cubes(keys):  # numba: per-call numpy overhead dominated the small clouds
    """Occupied cubes of the (N,) keys: (slot table, cube keys (M,), point -> cube (N,),
    cube -> its first point (M,), hash shift). Cubes are numbered in the order of their first
    point, so the first points come out sorted."""
    n = len(keys)
    bits = 3
    while (1 << bits) < 2 * n:
        bits += 1
    size = 1 << bits
    shift = 64 - bits
    table = np.full(size, -1, dtype=np.int64)
    cube_keys = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    inv = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        k = keys[i]
        s = _slot(k, shift)
        while True:
            c = table[s]
            if c < 0:
                table[s] = m
                cube_keys[m] = k
                first[m] = i
                inv[i] = m
                m += 1
                break
            if cube_keys[c] == k:
                inv[i] = c
                break
            s = (s + 1) & (size - 1)
    return table, cube_keys[:m], inv, first[:m], shift


@numba.njit(cache=True, nogil=True)
def _find_cube(table, cube_keys, shift, key):
    """Index of the occupied cube with `key`, -1 when none."""
    s = _slot(key, shift)
    while True:
        c = table[s]
        if c < 0 or cube_keys[c] == key:
            return c
        s = (s + 1) & (len(table) - 1)


@numba.njit(cache=True, nogil=True)
def _half_deltas(d1, d2):
    """(13,) key offsets of half of the 26-neighbourhood (the other half is their negatives)."""
    out = np.empty(13, dtype=np.int64)
    k = 0
    for dx in range(-1, 2):
        for dy in range(-1, 2):
            for dz in range(-1, 2):
                if (dx, dy, dz) > (0, 0, 0):
                    out[k] = (dx * d1 + dy) * d2 + dz
                    k += 1
    return out


@numba.njit(cache=True, nogil=True)
def _voxel_first(xyz, voxel, single):  # numba: per-call numpy overhead dominated the small clouds
    """(M,) sorted indices of the first point of each occupied voxel of the (N, 3) points."""
    if xyz.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    keys, _, _ = _cube_keys(xyz, voxel, single)
    return _hash_cubes(keys)[3].copy()


@numba.njit(cache=True, nogil=True)
def _grid_inliers(xyz, cell, std_ratio, single):  # numba: per-call numpy overhead dominated the small clouds
    """(N,) bool inlier mask of `grid_outliers`, threshold computed exactly as numpy did
    (integer counts, float64 mean, population std with pairwise summation)."""
    n = xyz.shape[0]
    keep = np.ones(n, dtype=np.bool_)
    if n < 10:
        return keep
    keys, d1, d2 = _cube_keys(xyz, cell, single)
    table, cube_keys, inv, _, shift = _hash_cubes(keys)
    m = len(cube_keys)
    cnt = np.zeros(m, dtype=np.int64)
    for i in range(n):
        cnt[inv[i]] += 1
    hood = cnt.copy()
    deltas = _half_deltas(d1, d2)
    for c in range(m):
        for d in deltas:
            o = _find_cube(table, cube_keys, shift, cube_keys[c] + d)
            if o >= 0:
                hood[c] += cnt[o]
                hood[o] += cnt[c]
    total = np.int64(0)
    for i in range(n):
        total += hood[inv[i]]
    mean = np.float64(total) / n  # exact integer sum, as numpy's float sum of integer counts
    sq = np.empty(n, dtype=np.float64)
    for i in range(n):
        d = np.float64(hood[inv[i]]) - mean
        sq[i] = d * d
    thr = mean - std_ratio * np.sqrt(pairwise_sum(sq, 0, len(sq)) / n)
    for i in range(n):
        keep[i] = np.float64(hood[inv[i]]) >= thr
    return keep


@numba.njit(cache=True, nogil=True)
def _largest_cluster(xyz, radius, single):  # numba: per-call numpy overhead dominated the small clouds
    """(N,) bool mask of `main_cluster`: union-find over 26-touching occupied cubes, the
    component with most points, ties to the one holding the smallest cube key."""
    n = xyz.shape[0]
    keep = np.ones(n, dtype=np.bool_)
    if n < 3:
        return keep
    keys, d1, d2 = _cube_keys(xyz, radius, single)
    table, cube_keys, inv, _, shift = _hash_cubes(keys)
    m = len(cube_keys)
    if m == 1:
        return keep
    parent = np.arange(m)
    deltas = _half_deltas(d1, d2)
    for c in range(m):
        for d in deltas:
            o = _find_cube(table, cube_keys, shift, cube_keys[c] + d)
            if o >= 0:
                a = root(parent, c)
                b = root(parent, o)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    size = np.zeros(m, dtype=np.int64)
    low = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    lab = np.empty(m, dtype=np.int64)
    for c in range(m):
        r = root(parent, c)
        lab[c] = r
        low[r] = min(low[r], cube_keys[c])
    for i in range(n):
        size[lab[inv[i]]] += 1
    best = -1
    for r in range(m):
        if parent[r] == r and (best < 0 or size[r] > size[best] or (size[r] == size[best] and low[r] < low[best])):
            best = r
    for i in range(n):
        keep[i] = lab[inv[i]] == best
    return keep


@numba.njit(cache=True, nogil=True)
def _clean(xyz, single, voxel_min, voxel_rel, sor, sor_cell_voxels, sor_std, cluster_min,
           cluster_rel):  # numba: per-call numpy overhead dominated the small clouds
    """(M,) sorted indices of the points `clean_points` keeps of the (N, 3) points, N >= 1."""
    z = _median_z(xyz, single)
    voxel = max(voxel_min, voxel_rel * z)
    idx = _voxel_first(xyz, voxel, single)
    pts = xyz[idx]
    if sor:
        keep = _grid_inliers(pts, sor_cell_voxels * voxel, sor_std, single)
        idx = idx[keep]
        pts = pts[keep]
    radius = max(max(cluster_min, cluster_rel * z), 2.0 * voxel)
    return idx[_largest_cluster(pts, radius, single)]


def voxel_downsample(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """(M,) sorted indices of one point per occupied voxel of edge `voxel` metres (the first
    one met in index order).

    Args:
        xyz: (N, 3) points, metres.
    """
    pts, single = _as_points(xyz)
    return _voxel_first(pts, float(voxel), single)


def statistical_outliers(xyz: np.ndarray, k: int, std_ratio: float) -> np.ndarray:
    """(N,) bool inlier mask, k-NN form: mean distance to the k nearest neighbours
    <= mean + std_ratio * std (Open3D's remove_statistical_outlier). Reference implementation
    for tests and small clouds; `clean_points` uses the O(N) grid form `grid_outliers`."""
    n = len(xyz)
    if n <= k + 1:
        return np.ones(n, dtype=bool)
    d, _ = cKDTree(xyz).query(xyz, k=k + 1)
    md = d[:, 1:].mean(axis=1)
    return md <= md.mean() + std_ratio * md.std()


def grid_outliers(xyz: np.ndarray, cell: float, std_ratio: float) -> np.ndarray:
    """(N,) bool inlier mask: statistical outlier removal on neighbour counts.

    Each point's statistic is the number of points in its cube of edge `cell` metres and the
    26 around it (a local density, the grid counterpart of the mean k-NN distance); points
    whose count is below mean - std_ratio * std (population std over the N points) are
    outliers. Fewer than 10 points: all kept. O(N), no tree.

    Args:
        xyz: (N, 3) points, metres.
    """
    pts, single = _as_points(xyz)
    return _grid_inliers(pts, float(cell), float(std_ratio), single)


def main_cluster(xyz: np.ndarray, radius: float) -> np.ndarray:
    """(N,) bool mask of the largest connected cluster at resolution `radius` (metres).

    Points are binned into cubes of edge `radius`; occupied cubes that touch (26-neighbourhood)
    are connected, so two points join when they are closer than about `radius` and never
    when farther than 2 * sqrt(3) * `radius`. This is DBSCAN-like single linkage on a grid:
    O(N) with no neighbour search. The largest cluster counts points, not cubes; between
    equally large ones, the one holding the lexicographically smallest cube (x, y, z) wins.
    Fewer than 3 points: all kept.

    Args:
        xyz: (N, 3) points, metres.
    """
    pts, single = _as_points(xyz)
    return _largest_cluster(pts, float(radius), single)


def clean_points(xyz: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """Voxel-downsample, remove statistical outliers and keep the main cluster.

    Args:
        xyz: (N, 3) camera-frame points of one object, metres, valid depth only.
    Returns:
        (M, 3) cleaned points of `xyz` (same dtype, original order), M <= N. The voxel edge
        and cluster radius scale with the median depth (points are sparser far away).
    """
    if len(xyz) == 0:
        return xyz
    pts, single = _as_points(xyz)
    sor = cfg.sor_std is not None
    idx = _clean(pts, single, float(cfg.voxel_min_m), float(cfg.voxel_rel), sor,
                 float(cfg.sor_cell_voxels), float(cfg.sor_std) if sor else 0.0,
                 float(cfg.cluster_min_m), float(cfg.cluster_rel))
    return xyz[idx]

"""Vectorised cleaning of an object's point cloud: voxel grid, statistical outliers, main cluster.

numpy/scipy rather than Open3D here: for the few thousand points of one object the
Open3D round trip (tensor conversion, DBSCAN) costs more than the whole numpy path; the
baseline in bench/ measures exactly that.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from lifting.lift.config import LiftConfig


def voxel_downsample(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """(M,) indices of one point per occupied voxel of edge `voxel` metres (the first one met).

    Args:
        xyz: (N, 3) points, metres.
    """
    if len(xyz) == 0:
        return np.zeros(0, dtype=np.int64)
    q = np.floor(xyz / voxel).astype(np.int64)
    q -= q.min(axis=0)
    dims = q.max(axis=0) + 1
    flat = (q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2]
    _, first = np.unique(flat, return_index=True)
    return np.sort(first)


def statistical_outliers(xyz: np.ndarray, k: int, std_ratio: float) -> np.ndarray:
    """(N,) bool inlier mask: mean distance to the k nearest neighbours <= mean + std_ratio * std."""
    n = len(xyz)
    if n <= k + 1:
        return np.ones(n, dtype=bool)
    d, _ = cKDTree(xyz).query(xyz, k=k + 1)
    md = d[:, 1:].mean(axis=1)
    return md <= md.mean() + std_ratio * md.std()


#: Half of the 26-neighbourhood (the other half is the same edges reversed).
_HALF_NEIGHBOURS = np.array(
    [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1) if (dx, dy, dz) > (0, 0, 0)]
)


def main_cluster(xyz: np.ndarray, radius: float) -> np.ndarray:
    """(N,) bool mask of the largest connected cluster at resolution `radius` (metres).

    Points are binned into cubes of edge `radius`; occupied cubes that touch (26-neighbourhood)
    are connected, so two points join when they are closer than about `radius` and never
    when farther than 2 * sqrt(3) * `radius`. This is DBSCAN-like single linkage on a grid:
    O(N log N) with no neighbour search, which is what keeps it under a millisecond.
    """
    n = len(xyz)
    if n < 3:
        return np.ones(n, dtype=bool)
    q = np.floor(xyz / radius).astype(np.int64)
    q -= q.min(axis=0) - 1  # keep a free layer so that neighbour offsets stay non-negative
    dims = q.max(axis=0) + 2
    key = (q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2]
    uniq, inv = np.unique(key, return_inverse=True)
    m = len(uniq)
    if m == 1:
        return np.ones(n, dtype=bool)
    vox = np.stack(np.unravel_index(uniq, (dims[0], dims[1], dims[2])), axis=1)
    src, dst = [], []
    for off in _HALF_NEIGHBOURS:
        nk = np.ravel_multi_index((vox + off).T, (dims[0], dims[1], dims[2]), mode="clip")
        j = np.searchsorted(uniq, nk)
        j = np.minimum(j, m - 1)
        hit = uniq[j] == nk
        src.append(np.flatnonzero(hit))
        dst.append(j[hit])
    src = np.concatenate(src)
    dst = np.concatenate(dst)
    g = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(m, m))
    _, lab = connected_components(g, directed=False)
    big = np.argmax(np.bincount(lab, weights=np.bincount(inv, minlength=m)))
    return lab[inv] == big


def clean_points(xyz: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """Voxel-downsample, remove statistical outliers and keep the main cluster.

    Args:
        xyz: (N, 3) camera-frame points of one object, metres, valid depth only.
    Returns:
        (M, 3) cleaned points, M <= N. The voxel edge and cluster radius scale with the
        median depth (points are sparser far away).
    """
    if len(xyz) == 0:
        return xyz
    z = float(np.median(xyz[:, 2]))
    voxel = max(cfg.voxel_min_m, cfg.voxel_rel * z)
    pts = xyz[voxel_downsample(xyz, voxel)]
    if cfg.sor_k and len(pts) > cfg.sor_k + 1:
        pts = pts[statistical_outliers(pts, cfg.sor_k, cfg.sor_std)]
    radius = max(cfg.cluster_min_m, cfg.cluster_rel * z, 2.0 * voxel)
    return pts[main_cluster(pts, radius)]

"""SpatialRGPT-style lifting baseline (Open3D), for the speed/quality comparison in bench/.

The chain SpatialRGPT's data pipeline uses per object (and most "depth + mask -> 3D box"
pipelines copy): back-project the mask pixels with the depth map, statistical outlier
removal, voxel downsampling, DBSCAN and keep the largest cluster, then an axis-aligned box
in the gravity frame (no yaw, no completion, no floor). Implemented with open3d's own
calls (the library the original uses) so that the comparison is against the real thing.

Parameters (SpatialRGPT-like defaults, scaled for metric depth):
    sor_neighbors=20, sor_std=2.0, voxel 0.01 * median depth (>= 5 mm),
    DBSCAN eps = 0.05 * median depth (>= 3 cm), min_points=10.

Never imported by the library: bench-only (open3d needs libusb, see DESIGN.md).
"""
from __future__ import annotations

import numpy as np


def _o3d():
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


def backproject_mask(mask: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) float64 camera-frame points (metres) of the mask pixels with valid depth.

    Args:
        mask: (H, W) bool object mask. depth: (H, W) metres, 0/NaN invalid. K: (3, 3).
    """
    rows, cols = np.nonzero(mask & np.isfinite(depth) & (depth > 0))
    z = depth[rows, cols].astype(np.float64)
    x = (cols - K[0, 2]) / K[0, 0] * z
    y = (rows - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], axis=1)


def lift_points(xyz_cam: np.ndarray, gravity_cam, *, sor_neighbors: int = 20, sor_std: float = 2.0,
                voxel_rel: float = 0.01, eps_rel: float = 0.05, min_points: int = 10):
    """Axis-aligned gravity-frame box of one object's points, or None (too few points).

    Args:
        xyz_cam: (N, 3) camera-frame points, metres. gravity_cam: (3,) unit "down".
    Returns:
        lifting.boxes.Box3D (yaw 0 in the gravity frame) or None.
    """
    from lifting.boxes import Box3D, gravity_frame

    o3d = _o3d()
    if len(xyz_cam) < min_points:
        return None
    z_med = float(np.median(xyz_cam[:, 2]))
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(xyz_cam, dtype=np.float64)))
    pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=sor_neighbors, std_ratio=sor_std)
    pcd = pcd.voxel_down_sample(max(0.005, voxel_rel * z_med))
    if len(pcd.points) < min_points:
        return None
    labels = np.asarray(pcd.cluster_dbscan(eps=max(0.03, eps_rel * z_med), min_points=min_points))
    if labels.size == 0 or labels.max() < 0:
        return None
    big = np.argmax(np.bincount(labels[labels >= 0]))
    pts = np.asarray(pcd.points)[labels == big]
    G = gravity_frame(gravity_cam)
    pg = pts @ G
    lo, hi = pg.min(axis=0), pg.max(axis=0)
    dims = np.maximum(hi - lo, 1e-3)
    return Box3D.from_gravity(((lo + hi) / 2) @ G.T, dims, 0.0, gravity_cam)


def lift_image_baseline(masks: list[np.ndarray], depth: np.ndarray, K: np.ndarray, gravity_cam) -> list:
    """Baseline boxes (Box3D or None) of every object mask of one image (same inputs as the
    lifting core: (H, W) bool masks, (H, W) metric depth, (3, 3) K, gravity)."""
    return [lift_points(backproject_mask(m, depth, K), gravity_cam) for m in masks]

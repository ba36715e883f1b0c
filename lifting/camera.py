"""Pinhole camera geometry: intrinsics, back-projection and projection.

Convention:
    Camera frame is OpenCV's: +x right, +y down, +z forward, metres.
    Pixel (u, v) = (column, row); the centre of the top-left pixel is (0, 0), so pixel
    centres of an H x W image are u in [0, W-1], v in [0, H-1].
    K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels of the stored image.
"""
from __future__ import annotations

import math

import numpy as np

#: Points closer than this to the camera plane (metres) are treated as behind the camera.
NEAR_PLANE_M = 1e-3


def _check_K(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got {K.shape}")
    return K


def make_K(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Intrinsic matrix (3, 3) float64 from focal lengths and principal point (pixels)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def K_from_fov(width: int, height: int, fov_x_deg: float) -> np.ndarray:
    """Intrinsics (3, 3) of a W x H image whose horizontal field of view is `fov_x_deg`.

    Square pixels, principal point at the image centre ((W-1)/2, (H-1)/2).
    """
    if not 0.0 < fov_x_deg < 180.0:
        raise ValueError(f"fov_x_deg must be in (0, 180), got {fov_x_deg}")
    f = (width / 2.0) / math.tan(math.radians(fov_x_deg) / 2.0)
    return make_K(f, f, (width - 1) / 2.0, (height - 1) / 2.0)


def fov_from_K(K: np.ndarray, width: int) -> float:
    """Horizontal field of view in degrees of intrinsics K for an image `width` pixels wide."""
    K = _check_K(K)
    return math.degrees(2.0 * math.atan((width / 2.0) / K[0, 0]))


def K_from_exif_35mm(width: int, height: int, focal_35mm: float) -> np.ndarray:
    """Intrinsics (3, 3) from the EXIF 35 mm-equivalent focal length (tag FocalLengthIn35mmFilm).

    The 35 mm equivalent refers to the diagonal of a 36 x 24 mm frame (43.27 mm), so
    f_px = focal_35mm / 43.27 * image_diagonal_px. Square pixels, centred principal point.
    """
    if focal_35mm <= 0:
        raise ValueError(f"focal_35mm must be positive, got {focal_35mm}")
    diag_35 = math.hypot(36.0, 24.0)
    f = focal_35mm / diag_35 * math.hypot(width, height)
    return make_K(f, f, (width - 1) / 2.0, (height - 1) / 2.0)


def scale_K(K: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resized from `src_size` (W, H) to `dst_size` (W, H).

    Uses the pixel-centre convention: a pixel centre u maps to (u + 0.5) * s - 0.5.
    """
    K = _check_K(K)
    sx = dst_size[0] / src_size[0]
    sy = dst_size[1] / src_size[1]
    out = K.copy()
    out[0, 0] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


def crop_K(K: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """Intrinsics after cropping the image so that pixel (x0, y0) becomes (0, 0)."""
    out = _check_K(K).copy()
    out[0, 2] -= x0
    out[1, 2] -= y0
    return out


#: The steepest ray a pinhole K may give inside its image: |u - cx| / fx and |v - cy| / fy at
#: most tan(87.5 deg) (a 175 deg field of view). A smaller positive focal length (fx = 1e-4)
#: is not a camera: it throws the points of a 1 m depth ~10^6 m sideways, and every metric
#: grid of the lifting core (voxels, histograms) would grow with that extent.
MAX_RAY_SLOPE = 22.9


def ray_slope(K: np.ndarray, width: int, height: int) -> float:
    """The largest |u - cx| / fx or |v - cy| / fy over the image's pixel edges (K (3, 3), pixels)."""
    return max(max(abs(K[0, 2]), abs(width - K[0, 2])) / K[0, 0],
               max(abs(K[1, 2]), abs(height - K[1, 2])) / K[1, 1])


def validate_K(K, width: int | None = None, height: int | None = None) -> str | None:
    """Return a reason code when K is unusable, else None.

    Reasons: `bad_intrinsics_shape`, `bad_intrinsics_nonfinite`, `bad_intrinsics_focal`
    (fx or fy <= 0) and, with the image size, `bad_intrinsics_principal_point` and
    `bad_intrinsics_fov` (a ray steeper than `MAX_RAY_SLOPE`: a focal length too small for
    the image).
    """
    try:
        K = _check_K(K)
    except (ValueError, TypeError):
        return "bad_intrinsics_shape"
    if not np.all(np.isfinite(K)):
        return "bad_intrinsics_nonfinite"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return "bad_intrinsics_focal"
    if width is not None and height is not None:
        if not (-width <= K[0, 2] <= 2 * width and -height <= K[1, 2] <= 2 * height):
            return "bad_intrinsics_principal_point"
        if ray_slope(K, width, height) > MAX_RAY_SLOPE:
            return "bad_intrinsics_fov"
    return None


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: u (H, W) columns and v (H, W) rows, float32."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    return u, v


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Back-project a depth map to camera-frame points.

    Args:
        depth: (H, W) z-depth in metres (distance along +z, not along the ray).
        K: (3, 3) intrinsics.
    Returns:
        (H, W, 3) float32 points in the camera frame; invalid depth gives invalid points
        (the caller masks them with `np.isfinite(depth) & (depth > 0)`).
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    K = _check_K(K)
    h, w = depth.shape
    u, v = pixel_grid(h, w)
    return unproject_points(np.stack([u, v], axis=-1), depth, K)


def unproject_points(uv: np.ndarray, z: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixel coordinates plus z-depth to camera-frame points.

    Args:
        uv: (..., 2) pixel coordinates (u = column, v = row).
        z: (...) z-depth in metres.
        K: (3, 3) intrinsics.
    Returns:
        (..., 3) float32 camera-frame points.
    """
    K = _check_K(K)
    uv = np.asarray(uv, dtype=np.float32)
    z = np.asarray(z, dtype=np.float32)
    fx, fy, cx, cy = (np.float32(K[0, 0]), np.float32(K[1, 1]), np.float32(K[0, 2]), np.float32(K[1, 2]))
    x = (uv[..., 0] - cx) / fx * z
    y = (uv[..., 1] - cy) / fy * z
    return np.stack([x, y, z], axis=-1)


def project_points(xyz_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points to pixels.

    Args:
        xyz_cam: (..., 3) camera-frame points, metres.
        K: (3, 3) intrinsics.
    Returns:
        uv: (..., 2) float64 pixel coordinates (NaN for points behind the near plane),
        z: (...) depth of each point (may be <= 0 for points behind the camera).
    """
    K = _check_K(K)
    p = np.asarray(xyz_cam, dtype=np.float64)
    z = p[..., 2]
    front = z >= NEAR_PLANE_M
    zs = np.where(front, z, np.nan)
    u = K[0, 0] * p[..., 0] / zs + K[0, 2]
    v = K[1, 1] * p[..., 1] / zs + K[1, 2]
    return np.stack([u, v], axis=-1), z


def clip_segment_to_near_plane(p0: np.ndarray, p1: np.ndarray, near: float = NEAR_PLANE_M):
    """Clip the 3D segment p0-p1 (camera frame) to the half-space z >= near.

    Returns the clipped (q0, q1) or None when the whole segment is behind the plane.
    """
    z0, z1 = p0[2], p1[2]
    if z0 < near and z1 < near:
        return None
    if z0 >= near and z1 >= near:
        return p0, p1
    t = (near - z0) / (z1 - z0)
    q = p0 + t * (p1 - p0)
    q[2] = near  # exactly on the plane: rounding must not put it behind
    return (q, p1) if z0 < near else (p0, q)

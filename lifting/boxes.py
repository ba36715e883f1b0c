"""Gravity-aligned metric 3D boxes in the camera frame.

Convention (DESIGN.md):
    Camera frame is OpenCV's (+x right, +y down, +z forward, metres).
    A box has centre `center_cam` (3,), `dimensions` = (w, h, l) and rotation `R_cam` (3, 3)
    whose columns are the box's own x, y, z axes in the camera frame (box -> camera).
    w is the extent along the box x axis, h along the box y axis (parallel to gravity,
    pointing down), l along the box z axis. `yaw` is the rotation about gravity, measured
    in the gravity frame (see `gravity_frame`): R_cam = gravity_frame(g) @ rot_y(yaw).

Corner order (box frame; y points down, along gravity; z away from the viewer):

              3 -------- 2          corners 0..3: y = -h/2 (top face)
             /|         /|          corners 4..7: y = +h/2 (bottom face)
            0 -------- 1 |
            | 7 -------|-6          x grows to the right (0 -> 1),
            |/         |/           z grows into the page (0 -> 3)
            4 -------- 5

    Explicitly, in units of half-extents (x, y, z):
        0 (-,-,-)  1 (+,-,-)  2 (+,-,+)  3 (-,-,+)
        4 (-,+,-)  5 (+,+,-)  6 (+,+,+)  7 (-,+,+)
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from lifting.camera import NEAR_PLANE_M, clip_segment_to_near_plane, project_points

#: Corner signs in units of half-extents, see module docstring.
CORNER_SIGNS = np.array(
    [
        [-1, -1, -1],
        [+1, -1, -1],
        [+1, -1, +1],
        [-1, -1, +1],
        [-1, +1, -1],
        [+1, +1, -1],
        [+1, +1, +1],
        [-1, +1, +1],
    ],
    dtype=np.float64,
)

#: The 12 edges as index pairs into the corner array.
EDGES = np.array(
    [[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]]
)

#: The 6 faces as corner index quadruples, counter-clockwise seen from outside.
FACES = np.array(
    [[0, 1, 2, 3], [4, 7, 6, 5], [0, 4, 5, 1], [1, 5, 6, 2], [2, 6, 7, 3], [3, 7, 4, 0]]
)

DEFAULT_GRAVITY = np.array([0.0, 1.0, 0.0])


def rot_y(yaw: float) -> np.ndarray:
    """Rotation (3, 3) by `yaw` radians about +y (right-handed)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def wrap_angle(a: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def gravity_frame(gravity_cam) -> np.ndarray:
    """Rotation (3, 3) whose columns are the gravity frame's axes in the camera frame.

    The gravity frame has +y along `gravity_cam` (down), +z along the camera's forward
    direction projected on the horizontal plane, +x = y cross z (to the right). For an
    upright camera (gravity [0, 1, 0]) it is the identity. Points map as
    xyz_grav = xyz_cam @ R, xyz_cam = xyz_grav @ R.T.
    """
    g = np.asarray(gravity_cam, dtype=np.float64).ravel()
    if g.size != 3:
        raise ValueError(f"gravity_cam must be a 3-vector, got {gravity_cam}")
    # + 0.0 turns -0.0 into 0.0: the cache treats them as one key, so the result must not differ
    return _gravity_frame(float(g[0]) + 0.0, float(g[1]) + 0.0, float(g[2]) + 0.0).copy()


@functools.lru_cache(maxsize=256)
def _gravity_frame(gx: float, gy: float, gz: float) -> np.ndarray:
    # cached: every object of an image shares its gravity (the lifting core asks per object)
    g = np.array([gx, gy, gz])
    n = np.linalg.norm(g)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"gravity_cam must be a non-zero vector, got {g.tolist()}")
    y = g / n
    fwd = np.array([0.0, 0.0, 1.0])
    z = fwd - fwd.dot(y) * y
    if np.linalg.norm(z) < 1e-6:  # looking straight up or down: use camera +y instead
        alt = np.array([0.0, 1.0, 0.0]) if abs(y[1]) < 0.9 else np.array([0.0, 0.0, -1.0])
        z = alt - alt.dot(y) * y
    z /= np.linalg.norm(z)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=1)


@dataclass(frozen=True)
class Box3D:
    """A metric 3D box in the camera frame (see module docstring for the convention)."""

    center_cam: np.ndarray  # (3,) metres
    dimensions: np.ndarray  # (3,) w, h, l metres
    R_cam: np.ndarray  # (3, 3) box -> camera
    yaw: float = 0.0  # radians about gravity, in the gravity frame

    def __post_init__(self):
        object.__setattr__(self, "center_cam", np.asarray(self.center_cam, dtype=np.float64).reshape(3))
        object.__setattr__(self, "dimensions", np.asarray(self.dimensions, dtype=np.float64).reshape(3))
        object.__setattr__(self, "R_cam", np.asarray(self.R_cam, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "yaw", float(self.yaw))

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_gravity(cls, center_cam, dimensions, yaw: float, gravity_cam=DEFAULT_GRAVITY) -> "Box3D":
        """Gravity-aligned box: h along `gravity_cam`, rotated by `yaw` about it."""
        R = gravity_frame(gravity_cam) @ rot_y(yaw)
        return cls(center_cam, dimensions, R, wrap_angle(yaw))

    @classmethod
    def from_omni3d(cls, ann: dict, gravity_cam=None) -> "Box3D":
        """From an Omni3D-style annotation dict with center_cam, dimensions, R_cam.

        `yaw` is recovered about `gravity_cam` (default: the box's own y axis, which is
        gravity for gravity-aligned boxes).
        """
        R = np.asarray(ann["R_cam"], dtype=np.float64).reshape(3, 3)
        g = R[:, 1] if gravity_cam is None else gravity_cam
        return cls(ann["center_cam"], ann["dimensions"], R, yaw_of(R, g))

    def to_omni3d(self) -> dict:
        """Omni3D-style fields: center_cam, dimensions, R_cam, bbox3D_cam (8 corners), yaw."""
        return {
            "center_cam": [float(x) for x in self.center_cam],
            "dimensions": [float(x) for x in self.dimensions],
            "R_cam": [[float(x) for x in row] for row in self.R_cam],
            "bbox3D_cam": [[float(x) for x in c] for c in self.corners()],
            "yaw": float(self.yaw),
        }

    # -- geometry -----------------------------------------------------------------------
    def corners(self) -> np.ndarray:
        """(8, 3) corners in the camera frame, in the order of CORNER_SIGNS."""
        local = CORNER_SIGNS * (self.dimensions / 2.0)
        return local @ self.R_cam.T + self.center_cam

    @property
    def volume(self) -> float:
        return float(np.prod(self.dimensions))

    @property
    def up_axis(self) -> np.ndarray:
        """(3,) the box's y axis in the camera frame (gravity direction for gravity-aligned boxes)."""
        return self.R_cam[:, 1]

    def contains(self, xyz_cam: np.ndarray, tol: float = 0.0) -> np.ndarray:
        """(N,) bool: which of the (N, 3) camera-frame points lie inside the box (+tol metres)."""
        local = (np.asarray(xyz_cam, dtype=np.float64) - self.center_cam) @ self.R_cam
        return np.all(np.abs(local) <= self.dimensions / 2.0 + tol, axis=-1)

    def to_local(self, xyz_cam: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame points in the box frame (origin at the centre)."""
        return (np.asarray(xyz_cam, dtype=np.float64) - self.center_cam) @ self.R_cam

    def with_gravity_yaw(self, gravity_cam) -> "Box3D":
        """The same box with its yaw re-expressed about `gravity_cam`."""
        return Box3D(self.center_cam, self.dimensions, self.R_cam, yaw_of(self.R_cam, gravity_cam))


def yaw_of(R_cam: np.ndarray, gravity_cam) -> float:
    """Yaw (radians) of a box rotation about gravity: R_g = gravity_frame(g).T @ R ~ rot_y(yaw)."""
    Rg = gravity_frame(gravity_cam).T @ np.asarray(R_cam, dtype=np.float64)
    return wrap_angle(math.atan2(Rg[0, 2], Rg[0, 0]))


def project_box(box: Box3D, K: np.ndarray, image_size: tuple[int, int] | None = None):
    """2D box of the projection of a 3D box, with edges clipped to the near plane.

    Args:
        box: the 3D box (camera frame).
        K: (3, 3) intrinsics.
        image_size: (W, H) to clip the result to the image, or None.
    Returns:
        (x0, y0, x1, y1) in pixel-edge coordinates (pixel i spans [i, i+1], like COCO
        boxes), or None when the box is entirely behind the camera or (when clipping)
        entirely outside the image.
    """
    c = box.corners()
    if np.all(c[:, 2] >= NEAR_PLANE_M):
        pts = c
    else:
        segs = []
        for i, j in EDGES:
            s = clip_segment_to_near_plane(c[i], c[j])
            if s is not None:
                segs.extend(s)
        if not segs:
            return None
        pts = np.array(segs)
    uv, _ = project_points(pts, K)
    uv = uv + 0.5  # pixel-centre -> pixel-edge coordinates
    x0, y0 = uv.min(axis=0)
    x1, y1 = uv.max(axis=0)
    out = (float(x0), float(y0), float(x1), float(y1))
    return out if image_size is None else clip_box_2d(out, image_size)


def clip_box_2d(b, image_size: tuple[int, int]):
    """A pixel-edge 2D box (x0, y0, x1, y1) clipped to a (W, H) image; None when the box
    is None or nothing of it is inside."""
    if b is None:
        return None
    w, h = image_size
    x0, x1 = min(max(b[0], 0.0), w), min(max(b[2], 0.0), w)
    y0, y1 = min(max(b[1], 0.0), h), min(max(b[3], 0.0), h)
    return None if x1 <= x0 or y1 <= y0 else (float(x0), float(y0), float(x1), float(y1))


def iou_2d(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) boxes; 0 when either is None or empty."""
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


def xywh_to_xyxy(b) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in b)
    return (x, y, x + w, y + h)


def xyxy_to_xywh(b) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in b)
    return (x0, y0, x1 - x0, y1 - y0)

"""Bird's-eye view of an image's 3D boxes with the camera frustum (PIL).

The view looks down along gravity: the horizontal axes are those of the gravity frame
(lifting.boxes.gravity_frame: +x right, +z forward, +y down), so a tilted camera still
gives a true top view. In the picture the camera sits at the bottom centre, forward (+z)
points up, +x right; a grid line every 1, 2, 5, 10 ... metres gives the scale.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from lifting.boxes import DEFAULT_GRAVITY, Box3D, gravity_frame
from lifting.camera import unproject_points
from lifting.viz.wireframe import category_color, font

BACKGROUND = (250, 250, 250)
GRID = (222, 222, 222)
FRUSTUM = (90, 90, 90)


def frustum_rays(K: np.ndarray, image_size: tuple[int, int], gravity_cam=DEFAULT_GRAVITY) -> tuple[np.ndarray, np.ndarray]:
    """Leftmost and rightmost horizontal view directions (2,) each as (x, z) in the
    gravity frame, unit length: the horizontal extent of the image's four corner rays."""
    w, h = image_size
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
    rays = unproject_points(corners, np.ones(4), K).astype(np.float64) @ gravity_frame(gravity_cam)
    ang = np.arctan2(rays[:, 0], rays[:, 2])  # 0 = straight ahead, + to the right
    lo, hi = ang.min(), ang.max()
    return np.array([math.sin(lo), math.cos(lo)]), np.array([math.sin(hi), math.cos(hi)])


def _nice_step(span: float) -> float:
    raw = span / 6.0
    p = 10 ** math.floor(math.log10(max(raw, 1e-6)))
    return next(s * p for s in (1, 2, 5, 10) if s * p >= raw)


def footprint(box: Box3D, R_g: np.ndarray) -> np.ndarray:
    """(4, 2) (x, z) gravity-frame footprint of a box (its top face), metres."""
    return (box.corners()[:4] @ R_g)[:, [0, 2]]


def render_bev(boxes: list[tuple[int, str, Box3D | None]], K: np.ndarray | None, image_size: tuple[int, int],
               gravity_cam=DEFAULT_GRAVITY, size: int = 480, max_range_m: float | None = None) -> Image.Image:
    """Top view image (size x size, RGB).

    Args:
        boxes: (label index, category, box or None) per object; None is skipped.
        K: (3, 3) intrinsics (for the frustum) or None.
        image_size: (W, H) of the photo, pixels.
        gravity_cam: (3,) unit down vector in the camera frame.
        max_range_m: forward range shown; default fits the boxes (at least 4 m).
    """
    R_g = gravity_frame(gravity_cam if gravity_cam is not None else DEFAULT_GRAVITY)
    fps = [(i, c, footprint(b, R_g)) for i, c, b in boxes if b is not None]
    if max_range_m is None:
        far = max([float(fp[:, 1].max()) for _, _, fp in fps] + [4.0 / 1.15])
        side = max([float(np.abs(fp[:, 0]).max()) for _, _, fp in fps] + [0.0])
        max_range_m = 1.15 * max(far, 2.0 * side)
    pad = 28
    scale = (size - 2 * pad) / max_range_m  # px per metre

    def to_px(xz: np.ndarray) -> np.ndarray:
        xz = np.atleast_2d(xz)
        return np.stack([size / 2.0 + xz[:, 0] * scale, size - pad - xz[:, 1] * scale], axis=1)

    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    fnt = font(11)
    step = _nice_step(max_range_m)
    k = 1
    while k * step <= max_range_m * 1.2:
        d = k * step
        y = size - pad - d * scale
        draw.line([(0, y), (size, y)], fill=GRID)
        draw.text((3, y - 12), f"{d:g} m", fill=(130, 130, 130), font=fnt)
        for sx in (-1, 1):
            x = size / 2.0 + sx * d * scale
            draw.line([(x, 0), (x, size - pad)], fill=GRID)
        k += 1
    cam = to_px(np.zeros(2))[0]
    if K is not None:
        reach = max_range_m * 1.6
        for ray in frustum_rays(np.asarray(K, dtype=np.float64), image_size, R_g[:, 1]):
            end = to_px(ray * reach)[0]
            draw.line([tuple(cam), tuple(end)], fill=FRUSTUM, width=1)
    draw.polygon([(cam[0], cam[1] - 8), (cam[0] - 6, cam[1] + 4), (cam[0] + 6, cam[1] + 4)], fill=(40, 40, 40))
    for i, c, fp in fps:
        color = category_color(c)
        px = [tuple(p) for p in to_px(fp)]
        draw.polygon(px, outline=color, width=2)
        draw.line([px[0], px[1]], fill=color, width=4)  # the face nearest to the viewer at yaw 0 (corners 0-1)
        ctr = to_px(fp.mean(axis=0))[0]
        draw.text((ctr[0] + 4, ctr[1] - 6), f"#{i}", fill=color, font=fnt)
    draw.text((size - 98, size - pad + 6), "top view (gravity)", fill=(120, 120, 120), font=fnt)
    return img


"""Projected wireframes of 3D boxes on the photo, with correct near-plane clipping.

Each of the 12 box edges (lifting.boxes.EDGES) is clipped in 3D to the half-space in
front of the camera (z >= NEAR_PLANE_M) *before* projection, so an edge that passes
behind the camera is drawn as the part that is really in view instead of wrapping through
the mirror image; the projected segment is then clipped to the image rectangle
(Liang-Barsky, written here: a dozen lines, and PIL mis-draws coordinates near 1e6 px).

Convention: pixel coordinates are pixel centres, as in lifting.camera (the centre of the
top-left pixel is (0, 0)); PIL draws integer coordinate i on pixel i, which agrees.
"""
from __future__ import annotations

import colorsys
import hashlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lifting.boxes import EDGES, Box3D
from lifting.camera import NEAR_PLANE_M, clip_segment_to_near_plane, project_points
from lifting.evaluate import record_box

#: Distinct colours for categories (tab10 without grey), RGB 0-255.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207)]
REJECTED_COLOR = (160, 160, 160)

#: Clip plane for drawing, a little in front of NEAR_PLANE_M: a point clipped exactly to
#: NEAR_PLANE_M can land a rounding error behind it, where project_points returns NaN.
_CLIP_NEAR_M = 2.0 * NEAR_PLANE_M


def category_color(category: str) -> tuple[int, int, int]:
    """Stable RGB colour of a category name (the same in every image and in the gallery)."""
    h = int(hashlib.md5(category.encode("utf-8")).hexdigest()[:8], 16)
    if h % 3 == 0:  # widen the palette beyond 9 while keeping it stable
        r, g, b = colorsys.hsv_to_rgb((h >> 4) % 360 / 360.0, 0.75, 0.9)
        return int(r * 255), int(g * 255), int(b * 255)
    return PALETTE[h % len(PALETTE)]


def color_hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % tuple(rgb)


def clip_segment_to_rect(p0, p1, rect: tuple[float, float, float, float]):
    """Clip the 2D segment p0-p1 to rect (x0, y0, x1, y1) (Liang-Barsky).

    Returns the clipped ((x, y), (x, y)) or None when the segment misses the rectangle.
    """
    x0, y0 = float(p0[0]), float(p0[1])
    dx, dy = float(p1[0]) - x0, float(p1[1]) - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - rect[0]), (dx, rect[2] - x0), (-dy, y0 - rect[1]), (dy, rect[3] - y0)):
        if p == 0.0:
            if q < 0.0:
                return None
            continue
        t = q / p
        if p < 0.0:
            if t > t1:
                return None
            t0 = max(t0, t)
        else:
            if t < t0:
                return None
            t1 = min(t1, t)
    return (x0 + t0 * dx, y0 + t0 * dy), (x0 + t1 * dx, y0 + t1 * dy)


def box_segments_2d(box: Box3D, K: np.ndarray, image_size: tuple[int, int] | None = None,
                    margin: float = 2.0) -> list[tuple[int, np.ndarray]]:
    """Projected, clipped edges of a 3D box.

    Args:
        box: box in the camera frame (metres).
        K: (3, 3) intrinsics.
        image_size: (W, H) to clip to [-margin, W-1+margin] x [-margin, H-1+margin]
            (pixel centres), or None for no 2D clipping.
    Returns:
        list of (edge index into EDGES, (2, 2) array [[u0, v0], [u1, v1]] pixel centres);
        edges wholly behind the near plane or outside the image are left out.
    """
    c = box.corners()
    out = []
    for e, (i, j) in enumerate(EDGES):
        seg = clip_segment_to_near_plane(c[i], c[j], _CLIP_NEAR_M)
        if seg is None:
            continue
        uv, _ = project_points(np.stack(seg), K)
        if not np.all(np.isfinite(uv)):
            continue
        if image_size is not None:
            w, h = image_size
            r = clip_segment_to_rect(uv[0], uv[1], (-margin, -margin, w - 1 + margin, h - 1 + margin))
            if r is None:
                continue
            uv = np.array(r)
        out.append((e, uv))
    return out


def font(size: int = 14) -> ImageFont.ImageFont:
    """PIL's bundled font at `size` px (FreeType when available)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # old Pillow / no FreeType
        return ImageFont.load_default()


def draw_box(draw: ImageDraw.ImageDraw, box: Box3D, K: np.ndarray, image_size: tuple[int, int],
             color=(255, 0, 0), width: int = 2) -> list[np.ndarray]:
    """Draw the wireframe of `box` on `draw` (an image of `image_size` (W, H)).

    Returns the drawn (2, 2) pixel-centre segments (empty when nothing is in view).
    """
    segs = box_segments_2d(box, K, image_size)
    for _, uv in segs:
        draw.line([tuple(uv[0]), tuple(uv[1])], fill=tuple(color), width=width)
    return [uv for _, uv in segs]


def draw_label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, color,
               image_size: tuple[int, int], fnt=None, taken: list | None = None) -> tuple:
    """A text label on a filled box of `color`, anchored bottom-left at `xy`, kept inside the image.

    `taken` (list of (x0, y0, x1, y1) pixel rectangles of earlier labels) is avoided by
    moving the label up or down a few rows, and the new rectangle is appended to it.
    Returns the label's rectangle.
    """
    fnt = fnt or font()
    l, t, r, b = draw.textbbox((0, 0), text, font=fnt)
    tw, th = r - l + 6, b - t + 4
    w, h = image_size
    x = min(max(0.0, xy[0]), max(0.0, w - tw))
    y0 = min(max(0.0, xy[1] - th), max(0.0, h - th))
    y = y0
    if taken:
        for dy in (0, -1, 1, -2, 2, -3, 3):
            y = min(max(0.0, y0 + dy * (th + 1)), max(0.0, h - th))
            if not any(x < R[2] and R[0] < x + tw and y < R[3] and R[1] < y + th for R in taken):
                break
    if taken is not None:
        taken.append((x, y, x + tw, y + th))
    draw.rectangle([x, y, x + tw, y + th], fill=tuple(color))
    lum = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    draw.text((x + 3 - l, y + 2 - t), text, fill=(0, 0, 0) if lum > 140 else (255, 255, 255), font=fnt)
    return (x, y, x + tw, y + th)


def box_label(index: int, category: str, box: Box3D) -> str:
    """'#i category w x h x l m, z m' (dimensions and centre depth in metres)."""
    w, h, l = box.dimensions
    return f"#{index} {category} {w:.2f}x{h:.2f}x{l:.2f} m z={box.center_cam[2]:.1f} m"


def annotate(image: Image.Image, objects: list[dict], K: np.ndarray, width: int = 2,
             font_size: int = 13, show_rejected: bool = True, labels: bool = True) -> Image.Image:
    """Photo with the wireframes and labels of a record's objects.

    Args:
        image: the stored photo (W, H) (a copy is drawn on).
        objects: record objects, each with 'category', 'status', 'box3d' (Omni3D-style,
            camera frame) or None, 'bbox_xyxy' (pixel-edge coordinates), 'reason'; an
            optional '_index' numbers the label (matches the bird's-eye view).
        K: (3, 3) intrinsics of `image`.
    Rejected objects are shown as a dashed grey 2D box with their reason (when
    `show_rejected`); `labels=False` draws the wireframes alone.
    """
    img = image.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    size = img.size
    fnt = font(font_size)
    taken: list = []
    for n, o in enumerate(objects):
        idx = o.get("_index", n + 1)
        box = record_box(o) if o.get("status", "kept") == "kept" else None
        if box is None:
            if show_rejected and o.get("bbox_xyxy"):
                x0, y0, x1, y1 = o["bbox_xyxy"]
                _dashed_rect(draw, (x0, y0, x1 - 1, y1 - 1), REJECTED_COLOR)
                if labels:
                    draw_label(draw, (x0, y0), f"#{idx} {o.get('category', '?')}: {o.get('reason') or 'rejected'}",
                               REJECTED_COLOR, size, fnt, taken)
            continue
        color = category_color(str(o.get("category", "?")))
        segs = draw_box(draw, box, K, size, color, width)
        if segs and labels:
            pts = np.concatenate(segs)
            top = pts[np.argmin(pts[:, 1])]
            draw_label(draw, (top[0], top[1]), box_label(idx, str(o.get("category", "?")), box), color, size, fnt, taken)
    return img


def _dashed_rect(draw: ImageDraw.ImageDraw, rect, color, dash: int = 6) -> None:
    x0, y0, x1, y1 = rect
    for (a, b) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        n = max(1, int(max(abs(b[0] - a[0]), abs(b[1] - a[1])) // dash))
        for k in range(0, n, 2):
            t0, t1 = k / n, min(1.0, (k + 1) / n)
            draw.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                       (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=color, width=1)

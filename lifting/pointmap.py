"""N3D-VLM's per-image point map: metric points in its camera convention plus a validity mask.

The released N3D-VLM reads, for every image, an `.npz` with
    pcd   float16 (h, w, 4): channels 0-2 the metric 3D point of each pixel with x LEFT, y UP,
          z FORWARD (the OpenCV camera frame, x right / y down / z forward, with x and y
          negated); channel 3 the validity mask (1 valid, 0 no depth; invalid points are 0).
    intr  float32 (3, 3): the intrinsics of the point map's own grid normalised by its size,
          [[fx/w, 0, cx/w], [0, fy/h, cy/h], [0, 0, 1]].
at a long side of 640 px by default (a 1024x683 image has a 640x427 map).

Convention: pixel (i, j) of the map is the ray through its centre, (j - cx_s) / fx_s and
(i - cy_s) / fy_s at depth z, where K_s is the image's K scaled to the map's grid
(pixel-edge scaling: the image spans the same [0, W] x [0, H] rectangle at every size), and z is
the depth of the nearest image pixel (no interpolation across depth edges or holes). At full
size this is exactly the back-projection of every pixel of the depth map. Maps are never
upsampled: an image smaller than the long side keeps its size.
"""
from __future__ import annotations

import io
import zipfile

import numpy as np

#: The release's resolution (long side, pixels).
N3D_LONG_SIDE = 640


def map_size(width: int, height: int, long_side: int | None = N3D_LONG_SIDE) -> tuple[int, int]:
    """(w, h) of the point map of a (width, height) image: scaled so the long side is
    `long_side` (rounded half up, at least 1 px), never upsampled; None = full size."""
    if long_side is None or max(width, height) <= long_side:
        return int(width), int(height)
    s = long_side / max(width, height)
    return max(1, int(np.floor(width * s + 0.5))), max(1, int(np.floor(height * s + 0.5)))


def scaled_K(K: np.ndarray, size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """(3, 3) intrinsics of a (W, H) image resampled to `new_size` (w, h), pixel-edge scaling:
    fx' = fx * w / W, cx' = (cx + 0.5) * w / W - 0.5 (and the same for y)."""
    (W, H), (w, h) = size, new_size
    sx, sy = w / W, h / H
    K = np.asarray(K, dtype=np.float64)
    return np.array([[K[0, 0] * sx, 0.0, (K[0, 2] + 0.5) * sx - 0.5],
                     [0.0, K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5],
                     [0.0, 0.0, 1.0]])


def point_map(depth: np.ndarray, K: np.ndarray, long_side: int | None = N3D_LONG_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """The N3D-VLM point map of a depth map (see the module docstring).

    Args:
        depth: (H, W) metres, camera frame z; 0, negative or non-finite = no depth.
        K: (3, 3) intrinsics in pixels of the depth map's grid.
        long_side: long side of the map in pixels (None: full size).
    Returns:
        pcd (h, w, 4) float16 (x left, y up, z forward in metres; mask), intr (3, 3) float32.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    H, W = depth.shape
    w, h = map_size(W, H, long_side)
    if (w, h) == (W, H):
        z = depth.astype(np.float32, copy=False)
    else:  # nearest image pixel of each map pixel centre
        cols = np.minimum(((np.arange(w) + 0.5) * (W / w)).astype(np.int64), W - 1)
        rows = np.minimum(((np.arange(h) + 0.5) * (H / h)).astype(np.int64), H - 1)
        z = depth[rows[:, None], cols[None, :]].astype(np.float32, copy=False)
    Ks = scaled_K(K, (W, H), (w, h))
    valid = np.isfinite(z) & (z > 0)
    z = np.where(valid, z, np.float32(0))
    pts = np.empty((h, w, 4), dtype=np.float32)
    # x left = -(j - cx) / fx * z ; y up = -(i - cy) / fy * z
    ray_x = ((Ks[0, 2] - np.arange(w)) / Ks[0, 0]).astype(np.float32)
    ray_y = ((Ks[1, 2] - np.arange(h)) / Ks[1, 1]).astype(np.float32)
    np.multiply(z, ray_x[None, :], out=pts[..., 0])
    np.multiply(z, ray_y[:, None], out=pts[..., 1])
    pts[..., 2] = z
    pts[..., 3] = valid
    pcd = to_float16(pts)
    intr = np.array([[Ks[0, 0] / w, 0.0, Ks[0, 2] / w], [0.0, Ks[1, 1] / h, Ks[1, 2] / h], [0.0, 0.0, 1.0]],
                    dtype=np.float32)
    return pcd, intr


def to_float16(a: np.ndarray) -> np.ndarray:
    """float32 -> float16, round to nearest even (IEEE), as numpy's astype. Through torch
    when it is importable: its conversion is vectorised, ~8x numpy's (the largest cost of a
    640 px point map); the bits are the same."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of lift3d
        return a.astype(np.float16)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.float16).numpy()


def npz_bytes(pcd: np.ndarray, intr: np.ndarray, compress: bool = False) -> bytes:
    """An `.npz` (numpy.load reads it) holding `pcd` and `intr`; deflated when `compress`
    (level 1; float16 points compress to about half, and the stored form is built ~40x faster)."""
    buf = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=mode, compresslevel=1 if compress else None) as zf:
        for name, arr in (("pcd", pcd), ("intr", intr)):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
            info.compress_type = mode
            # the level of an entry opened for writing (named _compresslevel up to 3.12)
            setattr(info, "compress_level" if hasattr(info, "compress_level") else "_compresslevel",
                    1 if compress else None)
            with zf.open(info, "w", force_zip64=False) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def read_npz(data: bytes | str) -> tuple[np.ndarray, np.ndarray]:
    """(pcd, intr) of a point-map `.npz` (bytes or a path)."""
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with np.load(src, allow_pickle=False) as z:
        return z["pcd"], z["intr"]

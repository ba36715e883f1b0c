"""Sensor depth maps in the common RGB-D conventions -> (H, W) float32 metres, 0 = invalid.

Conventions (`encoding`, `depth_scale` = stored units per metre):
    png16    16-bit PNG of depth units: metres = raw / depth_scale. Millimetres
             (Redwood, ScanNet, Omni3D's RGB-D sources) use depth_scale=1000; TUM RGB-D
             stores 5000 units per metre, i.e. depth_scale=5000.
    sunrgbd  SUN RGB-D's bit-rotated 16-bit PNG: millimetres = (raw >> 3) | (raw << 13)
             (16-bit rotate right by 3); metres = that / depth_scale (1000).
    nyu_raw  NYU Depth v2 raw Kinect frames (`.pgm`, stored little-endian despite the PGM
             spec): the 11-bit disparity d becomes metres = 351.3 / (1092.5 - d), capped
             at 10 m, as in the NYU toolbox's `depth_rel2depth_abs`; d = 2047 is invalid.
    float    float arrays already in metres (`.npy`, 32-bit float TIFF); depth_scale is
             ignored unless given (metres = raw / depth_scale).
    disparity16  16-bit PNG of stereo disparity (KITTI's): disparity px = raw / depth_scale
             (256 for KITTI), metres = focal_baseline / disparity, with
             `params["focal_baseline"]` = fx * baseline (pixels * metres).
    points   a LiDAR sweep or point file (little-endian float32, `params["columns"]` values
             per point, x y z first) in its own frame, projected into the image with
             `params["to_cam"]` (4x4, point frame -> camera frame), K and the image size:
             a sparse map, the nearest return per pixel (KITTI velodyne/*.bin, nuScenes
             LIDAR_TOP *.pcd.bin, votenet/mmdetection3d SUN RGB-D points). Use
             `read_record_depth`, which has K and the size.
Zero, NaN, inf and negative values become 0 ("no measurement").

Pillow reads the PNG/PGM/TIFF files; the PGM header is parsed here (a few lines) because
Pillow applies the PGM spec's big-endian order, which NYU's files do not follow.
"""
from __future__ import annotations

import io
import math
import os

import numpy as np

from lifting import storage
from lifting.sources.image_io import InputError

ENCODINGS = ("png16", "sunrgbd", "nyu_raw", "float", "disparity16", "points")
#: Encodings that `read_depth` decodes from the file alone (the others need the record).
FILE_ENCODINGS = ("png16", "sunrgbd", "nyu_raw", "float", "disparity16")
#: A point file larger than this is refused before reading (a full HDL-64 sweep is ~2 MB).
MAX_POINT_FILE_BYTES = 256 << 20
#: Decoded-pixel budget of a depth map, checked from the file's header before decoding
#: (`depth_too_large`): a 16-bit PNG is tiny on disk whatever size it declares, and decoding
#: costs ~14 bytes per pixel here (raw, float64, float32), so 32 MP stay under ~450 MB.
DEPTH_MAX_PIXELS = 32_000_000

#: NYU toolbox constants (depth_rel2depth_abs.m).
NYU_PARAM1 = 351.3
NYU_PARAM2 = 1092.5
NYU_MAX_DEPTH_M = 10.0
NYU_INVALID = 2047


def _check_scale(depth_scale) -> float:
    try:
        s = float(depth_scale)
    except (TypeError, ValueError) as e:
        raise InputError("depth_bad_scale", f"depth_scale={depth_scale!r}") from e
    if not math.isfinite(s) or s <= 0:
        raise InputError("depth_bad_scale", f"depth_scale={depth_scale!r} must be a positive number")
    return s


def read_pgm(path, expected_size=None, max_pixels: int | None = DEPTH_MAX_PIXELS) -> np.ndarray:
    """Raw values (H, W) of a binary PGM (P5) file; 16-bit samples read little-endian.

    Little-endian because the NYU Depth v2 raw dumps are written that way (the toolbox
    byte-swaps after `imread`). Raises InputError(`depth_unreadable`) on a bad header.
    """
    data = storage.read_bytes(path)
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            while pos < len(data) and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace():
            pos += 1
        if start == pos:
            raise InputError("depth_unreadable", f"{path}: truncated PGM header")
        tokens.append(data[start:pos])
    pos += 1  # the single whitespace after maxval
    if tokens[0] != b"P5":
        raise InputError("depth_unreadable", f"{path}: not a binary PGM (magic {tokens[0]!r})")
    try:
        w, h, maxval = (int(t) for t in tokens[1:])
    except ValueError as e:
        raise InputError("depth_unreadable", f"{path}: bad PGM header") from e
    _check_header(os.fspath(path), w, h, expected_size, max_pixels)
    dtype = np.dtype("<u2") if maxval > 255 else np.dtype("u1")
    n = w * h * dtype.itemsize
    if len(data) - pos < n or w <= 0 or h <= 0:
        raise InputError("depth_unreadable", f"{path}: PGM data shorter than {w}x{h}")
    return np.frombuffer(data, dtype=dtype, count=w * h, offset=pos).reshape(h, w).astype(np.uint16)


def _check_header(p: str, w: int, h: int, expected_size, max_pixels: int | None) -> None:
    """InputError before decoding when a depth map's header says W x H that is not the image's
    size (`depth_size_mismatch`) or more pixels than the budget (`depth_too_large`)."""
    if expected_size is not None and (int(w), int(h)) != (int(expected_size[0]), int(expected_size[1])):
        raise InputError("depth_size_mismatch", f"{p}: depth {w}x{h} vs image {expected_size[0]}x{expected_size[1]}")
    if max_pixels is not None and int(w) * int(h) > max_pixels:
        raise InputError("depth_too_large", f"{p}: {w}x{h} > {max_pixels} pixels (decompression bomb?)")


def _npy_shape(src) -> tuple:
    """The shape in the header of a `.npy` file (path or file object), nothing else read."""
    f = open(src, "rb") if isinstance(src, str) else src
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return read(f)[0]
    finally:
        if isinstance(src, str):
            f.close()
        else:
            f.seek(0)


def _read_raw(path, encoding: str, expected_size=None, max_pixels: int | None = DEPTH_MAX_PIXELS) -> np.ndarray:
    """Raw values of a depth file; its size is checked from the header first (`_check_header`)."""
    from PIL import Image, UnidentifiedImageError

    p = os.fspath(path)
    if encoding == "nyu_raw" or p.lower().endswith(".pgm"):
        return read_pgm(p, expected_size, max_pixels)
    src = io.BytesIO(storage.read_bytes(p)) if storage.is_url(p) else p
    if p.lower().endswith(".npy"):
        try:
            shape = _npy_shape(src)
            if len(shape) == 2:
                _check_header(p, shape[1], shape[0], expected_size, max_pixels)
            elif max_pixels is not None and math.prod(shape) > max_pixels:
                raise InputError("depth_too_large", f"{p}: shape {shape} > {max_pixels} values")
            return np.load(src, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError("depth_unreadable", f"{p}: {e}") from e
    try:
        with Image.open(src) as im:
            _check_header(p, im.size[0], im.size[1], expected_size, max_pixels)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                return np.asarray(im)
            raise InputError("depth_bad_format", f"{p}: mode {im.mode} is not a single-channel depth map")
    except Image.DecompressionBombError as e:  # Pillow's own limit, hit at open before ours
        raise InputError("depth_too_large", f"{p}: {e}") from e
    except UnidentifiedImageError as e:
        raise InputError("depth_unreadable", f"{p}: not a recognised image format") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError("depth_unreadable", f"{p}: {e}") from e


def read_depth(path, depth_scale: float | None = 1000.0, encoding: str = "png16",
               params: dict | None = None, expected_size: tuple[int, int] | None = None,
               max_pixels: int | None = DEPTH_MAX_PIXELS) -> np.ndarray:
    """Read a depth file into (H, W) float32 metres, 0 where there is no valid measurement.

    Args:
        path: depth file (16-bit PNG, PGM, 32-bit float TIFF or `.npy`).
        depth_scale: stored units per metre (1000 = millimetres, 5000 = TUM). Ignored for
            `nyu_raw`; optional for `float` (None means values are metres).
        encoding: one of `FILE_ENCODINGS` (see module docstring; `points` goes through
            `read_record_depth`).
        params: encoding parameters (`disparity16`: focal_baseline).
        expected_size: (W, H) of the image; a depth file whose header says otherwise is
            `depth_size_mismatch` before any pixel is decoded.
        max_pixels: decoded-pixel budget, checked from the header (`depth_too_large`).

    Raises:
        InputError with reason `depth_missing`, `depth_empty`, `depth_unreadable`,
        `depth_bad_format`, `depth_bad_scale`, `depth_bad_encoding`, `depth_size_mismatch`,
        `depth_too_large` or `depth_bad_values` (no valid pixel at all).
    """
    if encoding not in FILE_ENCODINGS:
        raise InputError("depth_bad_encoding", f"encoding={encoding!r}, expected one of {FILE_ENCODINGS}")
    p = os.fspath(path)
    if not storage.exists(p):
        raise InputError("depth_missing", p)
    if storage.isfile(p) and storage.getsize(p) == 0:
        raise InputError("depth_empty", p)
    scale = None
    if encoding in ("png16", "sunrgbd", "disparity16") or (encoding == "float" and depth_scale is not None):
        scale = _check_scale(depth_scale)
    raw = _read_raw(p, encoding, expected_size, max_pixels)
    if raw.ndim != 2 or raw.size == 0:
        raise InputError("depth_bad_format", f"{p}: expected a single-channel (H, W) map, got {raw.shape}")

    if encoding == "nyu_raw":
        d = raw.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            m = NYU_PARAM1 / (NYU_PARAM2 - d)
        m[raw >= NYU_INVALID] = 0.0
        m = np.minimum(m, NYU_MAX_DEPTH_M)
    elif encoding == "sunrgbd":
        r = raw.astype(np.uint16)
        mm = ((r >> 3) | (r << 13)).astype(np.uint16)
        m = mm.astype(np.float64) / scale
    elif encoding == "disparity16":
        fb = (params or {}).get("focal_baseline")
        if not isinstance(fb, (int, float)) or not math.isfinite(fb) or fb <= 0:
            raise InputError("depth_bad_params", f"disparity16 needs params.focal_baseline > 0, got {fb!r}")
        disp = raw.astype(np.float64) / scale
        with np.errstate(divide="ignore"):
            m = np.where(disp > 0, float(fb) / np.maximum(disp, 1e-12), 0.0)
    elif encoding == "png16":
        if raw.dtype.kind == "f":
            raise InputError("depth_bad_format", f"{p}: float data, use encoding='float'")
        m = raw.astype(np.float64) / scale
    else:
        m = raw.astype(np.float64)
        if scale is not None:
            m = m / scale
    out = m.astype(np.float32)
    out[~np.isfinite(out) | (out < 0)] = 0.0
    if not np.any(out > 0):
        raise InputError("depth_bad_values", f"{p}: no valid depth pixel")
    return out


def read_points(path, columns: int) -> np.ndarray:
    """(N, columns) float32 of a little-endian float32 point file (KITTI/nuScenes `.bin`).

    Raises InputError: `depth_missing`, `depth_empty`, `depth_too_large` (over
    MAX_POINT_FILE_BYTES, refused before reading), `depth_unreadable` (size not a multiple
    of a point), `depth_bad_params` (columns < 3).
    """
    p = os.fspath(path)
    if isinstance(columns, float) and columns.is_integer():  # a JSON round trip may make 4 into 4.0
        columns = int(columns)
    if not isinstance(columns, int) or isinstance(columns, bool) or columns < 3:
        raise InputError("depth_bad_params", f"points need columns >= 3 (x, y, z first), got {columns!r}")
    if not os.path.exists(p):
        raise InputError("depth_missing", p)
    size = os.path.getsize(p)
    if size == 0:
        raise InputError("depth_empty", p)
    if size > MAX_POINT_FILE_BYTES:
        raise InputError("depth_too_large", f"{p}: {size} bytes > {MAX_POINT_FILE_BYTES}")
    if size % (4 * columns):
        raise InputError("depth_unreadable", f"{p}: {size} bytes is not a whole number of {columns}-float points")
    return np.fromfile(p, dtype="<f4").reshape(-1, columns)


def project_points_to_depth(xyz: np.ndarray, to_cam: np.ndarray, K: np.ndarray, width: int, height: int,
                            min_depth: float = 0.1) -> np.ndarray:
    """Sparse (H, W) float32 z-depth (metres, 0 = no return) of points seen by a camera.

    Args:
        xyz: (N, 3) points in their own frame (LiDAR, upright depth frame, ...), metres.
        to_cam: (4, 4) rigid transform point frame -> camera frame (OpenCV, +z forward).
        K: (3, 3) intrinsics; width, height: the image size in pixels.
    Each point lands in the pixel whose centre is nearest to its projection (the centre of
    pixel (0, 0) is (0, 0), as in lifting.camera); where several do, the nearest wins (a z-buffer: the LiDAR sees past the camera's occluders otherwise).
    """
    T = np.asarray(to_cam, dtype=np.float64)
    cam = xyz.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    cam = cam[np.isfinite(cam).all(axis=1) & (cam[:, 2] > min_depth)]
    uvw = cam @ np.asarray(K, dtype=np.float64).T
    # the pixel whose centre is nearest (lifting.camera: the centre of pixel (0, 0) is (0, 0))
    u = np.rint(uvw[:, 0] / uvw[:, 2]).astype(np.int64)
    v = np.rint(uvw[:, 1] / uvw[:, 2]).astype(np.int64)
    ok = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    z, flat = cam[ok, 2], v[ok] * width + u[ok]
    order = np.lexsort((z, flat))  # by pixel, nearest first
    flat, z = flat[order], z[order]
    first = np.ones(len(flat), dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    out = np.zeros(height * width, dtype=np.float32)
    out[flat[first]] = z[first]
    return out.reshape(height, width)


def read_record_depth(rec: dict) -> np.ndarray:
    """(H, W) float32 metres of an image record's sensor depth, whatever its encoding.

    `rec` is an ImageRecord dict with depth_path, depth_scale, depth_encoding and, for
    `points`, depth_params {columns, to_cam (4x4)}, K and width/height.
    Raises InputError (reasons of `read_depth` / `read_points`, plus `depth_bad_params`).
    """
    enc = rec.get("depth_encoding") or "png16"
    params = rec.get("depth_params") or {}
    w, h, K = rec.get("width"), rec.get("height"), rec.get("K")
    if enc != "points":
        return read_depth(rec["depth_path"], rec.get("depth_scale") or 1000.0, enc, params,
                          expected_size=(int(w), int(h)) if w and h else None)
    try:
        T = np.asarray(params.get("to_cam"), dtype=np.float64)
        if T.shape == (3, 4):
            T = np.vstack([T, [0.0, 0.0, 0.0, 1.0]])
        ok = T.shape == (4, 4) and bool(np.all(np.isfinite(T))) and K is not None and bool(w) and bool(h)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError("depth_bad_params", "points need depth_params.to_cam (4x4), K and the image size")
    pts = read_points(rec["depth_path"], params.get("columns", 4))
    out = project_points_to_depth(pts[:, :3], T, np.asarray(K, dtype=np.float64), int(w), int(h))
    if not np.any(out > 0):
        raise InputError("depth_bad_values", f"{rec['depth_path']}: no point projects into the image")
    return out

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
Zero, NaN, inf and negative values become 0 ("no measurement").

Pillow reads the PNG/PGM/TIFF files; the PGM header is parsed here (a few lines) because
Pillow applies the PGM spec's big-endian order, which NYU's files do not follow.
"""
from __future__ import annotations

import math
import os

import numpy as np

from lifting.sources.image_io import InputError

ENCODINGS = ("png16", "sunrgbd", "nyu_raw", "float")

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


def read_pgm(path) -> np.ndarray:
    """Raw values (H, W) of a binary PGM (P5) file; 16-bit samples read little-endian.

    Little-endian because the NYU Depth v2 raw dumps are written that way (the toolbox
    byte-swaps after `imread`). Raises InputError(`depth_unreadable`) on a bad header.
    """
    with open(path, "rb") as f:
        data = f.read()
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
    dtype = np.dtype("<u2") if maxval > 255 else np.dtype("u1")
    n = w * h * dtype.itemsize
    if len(data) - pos < n or w <= 0 or h <= 0:
        raise InputError("depth_unreadable", f"{path}: PGM data shorter than {w}x{h}")
    return np.frombuffer(data, dtype=dtype, count=w * h, offset=pos).reshape(h, w).astype(np.uint16)


def _read_raw(path, encoding: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    p = os.fspath(path)
    if encoding == "nyu_raw" or p.lower().endswith(".pgm"):
        return read_pgm(p)
    if p.lower().endswith(".npy"):
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError("depth_unreadable", f"{p}: {e}") from e
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                return np.asarray(im)
            raise InputError("depth_bad_format", f"{p}: mode {im.mode} is not a single-channel depth map")
    except UnidentifiedImageError as e:
        raise InputError("depth_unreadable", f"{p}: not a recognised image format") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError("depth_unreadable", f"{p}: {e}") from e


def read_depth(path, depth_scale: float | None = 1000.0, encoding: str = "png16") -> np.ndarray:
    """Read a depth file into (H, W) float32 metres, 0 where there is no valid measurement.

    Args:
        path: depth file (16-bit PNG, PGM, 32-bit float TIFF or `.npy`).
        depth_scale: stored units per metre (1000 = millimetres, 5000 = TUM). Ignored for
            `nyu_raw`; optional for `float` (None means values are metres).
        encoding: one of `ENCODINGS` (see module docstring).

    Raises:
        InputError with reason `depth_missing`, `depth_empty`, `depth_unreadable`,
        `depth_bad_format`, `depth_bad_scale`, `depth_bad_encoding` or `depth_bad_values`
        (no valid pixel at all).
    """
    if encoding not in ENCODINGS:
        raise InputError("depth_bad_encoding", f"encoding={encoding!r}, expected one of {ENCODINGS}")
    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError("depth_missing", p)
    if os.path.isfile(p) and os.path.getsize(p) == 0:
        raise InputError("depth_empty", p)
    scale = None
    if encoding in ("png16", "sunrgbd") or (encoding == "float" and depth_scale is not None):
        scale = _check_scale(depth_scale)
    raw = _read_raw(p, encoding)
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

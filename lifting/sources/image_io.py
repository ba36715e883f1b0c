"""Decode an image file into the (H, W, 3) uint8 RGB array every stage works on.

Pillow does the decoding; this module adds what datasets need on top: EXIF orientation
applied (so pixel coordinates match what people annotated on screen), every odd mode
(CMYK, 16-bit grey, palette, LA/RGBA, 1-bit) converted to RGB, a decompression-bomb limit
checked from the header before any pixel is decoded, and failures reported as
`InputError(reason, detail)` with a stable reason code instead of Pillow's exceptions.

Convention: arrays are (H, W, 3) uint8 RGB of the image as displayed (after EXIF
rotation); (0, 0) is the top-left pixel.
"""
from __future__ import annotations

import logging
import os
import warnings

import numpy as np

from lifting import storage

log = logging.getLogger(__name__)

#: Default decompression-bomb limit: 178 MP is what Pillow itself warns about (2x its limit).
DEFAULT_MAX_PIXELS = 178_956_970

#: File extensions the folder source treats as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

_EXIF_IFD = 0x8769
_FOCAL_35MM = 41989  # FocalLengthIn35mmFilm
_ORIENTATION = 0x0112


class InputError(Exception):
    """An input file that cannot be used; `reason` is a stable snake_case code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _open(path):
    """The Pillow image of `path`, header read only; InputError for every expected failure."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if storage.is_url(path):
        src = _fetch(path)
    else:
        src = path
        if not os.path.exists(path):
            raise InputError("image_missing", path)
        if os.path.isdir(path):
            raise InputError("image_unreadable", f"{path} is a directory")
        try:
            if os.path.getsize(path) == 0:
                raise InputError("image_empty", path)
        except OSError as e:
            raise InputError("image_unreadable", f"{path}: {e}") from e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(src)
    except Image.DecompressionBombError as e:  # Pillow refuses > 2x its limit already at open
        raise InputError("image_too_large", f"{path}: {e}") from e
    except UnidentifiedImageError as e:
        raise InputError("image_unreadable", f"{path}: not a recognised image format") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError("image_unreadable", f"{path}: {e}") from e


def _fetch(url: str):
    """The bytes of image `url` (lifting.storage) as a seekable file, or InputError.

    Missing and empty objects are data failures (`image_missing`, `image_empty`);
    permission and credential errors are not (they concern every image alike) and
    propagate, so the job stops with one line and nothing is recorded as failed."""
    import io

    try:
        data = storage.read_bytes(url)
    except (FileNotFoundError, IsADirectoryError) as e:
        raise InputError("image_missing", url) from e
    if not data:
        raise InputError("image_empty", url)
    return io.BytesIO(data)


def _to_rgb(im) -> "np.ndarray":
    """(H, W, 3) uint8 RGB of a loaded Pillow image of any mode."""
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im)
        if mode == "I":
            a = np.clip(a, 0, 65535)
        a8 = (a.astype(np.uint32) >> 8).astype(np.uint8) if a.max(initial=0) > 255 else a.astype(np.uint8)
        return np.repeat(a8[..., None], 3, axis=2)
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float32))
        lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
        a8 = ((a - lo) / (hi - lo) * 255).astype(np.uint8) if hi > lo else np.zeros(a.shape, np.uint8)
        return np.repeat(a8[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        # Transparent pixels over white, as a viewer shows them.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")  # CMYK, YCbCr, P, L, 1, LAB, HSV ...
    return np.asarray(im, dtype=np.uint8)


def image_size(path, apply_exif: bool = True) -> tuple[int, int]:
    """(W, H) in pixels of the image as displayed, from the header only (no pixel decoding)."""
    im = _open(path)
    with im:
        w, h = im.size
        if apply_exif:
            try:
                orientation = im.getexif().get(_ORIENTATION, 1)
            except (OSError, ValueError, SyntaxError):
                orientation = 1
            if orientation in (5, 6, 7, 8):
                w, h = h, w
    return int(w), int(h)


def read_image(path, max_pixels: int | None = DEFAULT_MAX_PIXELS, apply_exif: bool = True) -> np.ndarray:
    """Decode `path` into (H, W, 3) uint8 RGB with EXIF orientation applied.

    Args:
        path: image file (JPEG, PNG, WebP, BMP, TIFF, ... whatever Pillow reads).
        max_pixels: refuse images with more pixels than this (decompression bombs) before
            decoding them; None disables the check.
        apply_exif: rotate/flip by the EXIF Orientation tag (default True).

    Raises:
        InputError with reason `image_missing`, `image_empty`, `image_unreadable`,
        `image_truncated`, `image_too_large` or `image_zero_size`.
    """
    from PIL import Image, ImageOps

    im = _open(path)
    with im:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise InputError("image_zero_size", f"{path}: {w}x{h}")
        if max_pixels is not None and w * h > max_pixels:
            raise InputError("image_too_large", f"{path}: {w}x{h} > {max_pixels} pixels")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
                if apply_exif:
                    im = ImageOps.exif_transpose(im)
                out = _to_rgb(im)
        except Image.DecompressionBombError as e:
            raise InputError("image_too_large", f"{path}: {e}") from e
        except OSError as e:
            msg = str(e)
            if "truncated" in msg or "broken data stream" in msg or "premature end" in msg.lower():
                raise InputError("image_truncated", f"{path}: {msg}") from e
            raise InputError("image_unreadable", f"{path}: {msg}") from e
        except (ValueError, SyntaxError) as e:
            raise InputError("image_unreadable", f"{path}: {e}") from e
    if out.ndim != 3 or out.shape[2] != 3 or out.size == 0:
        raise InputError("image_unreadable", f"{path}: unexpected decoded shape {out.shape}")
    return out


def read_exif_focal_35mm(path) -> float | None:
    """EXIF FocalLengthIn35mmFilm (mm, 35 mm-equivalent) of an image file, or None.

    None when the file has no EXIF, no such tag, or a non-positive value. Reads the header
    only. Feed the value to `lifting.camera.K_from_exif_35mm` with the displayed size.
    """
    try:
        im = _open(path)
    except InputError:
        return None
    with im:
        try:
            exif = im.getexif()
            v = exif.get_ifd(_EXIF_IFD).get(_FOCAL_35MM)
            if v is None:
                v = exif.get(_FOCAL_35MM)
        except (OSError, ValueError, SyntaxError, KeyError, TypeError):
            return None
    try:
        f = float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
    return f if f is not None and f > 0 and np.isfinite(f) else None

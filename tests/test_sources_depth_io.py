"""Depth conventions on the real frames in shared/data/rgbd, and depth failure reasons."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lifting.sources.depth_io import read_depth, read_pgm
from lifting.sources.image_io import InputError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rgbd"
OTHER = DATA / "other_formats"


@pytest.fixture(autouse=False)
def rgbd():
    if not OTHER.exists():
        pytest.skip(f"shared sample data not found at {DATA}")
    return OTHER


def _raw(p):
    return np.asarray(Image.open(p)).astype(np.int64)


def test_redwood_millimetres():
    if not (DATA / "redwood").exists():
        pytest.skip(f"shared sample data not found at {DATA}")
    p = DATA / "redwood" / "depth" / "00000.png"
    d = read_depth(p, 1000)
    raw = _raw(p)
    assert d.dtype == np.float32 and d.shape == (480, 640)
    assert np.allclose(d, raw / 1000.0) and np.all((d == 0) == (raw == 0))


def test_tum_5000_units_per_metre(rgbd):
    p = rgbd / "TUM_depth.png"
    d = read_depth(p, 5000)
    raw = _raw(p)
    assert np.allclose(d, raw / 5000.0)
    v = d[d > 0]
    assert 0.5 < np.median(v) < 5.0 and v.max() < 10.0  # Kinect range; at 1000/m it would read 46 m
    assert read_depth(p, 1000).max() > 40


def test_sunrgbd_bit_rotation(rgbd):
    p = rgbd / "SUN_depth.png"
    raw = _raw(p).astype(np.uint16)
    d = read_depth(p, 1000, encoding="sunrgbd")
    mm = np.round(d * 1000).astype(np.int64)
    # rotation back: raw == (mm << 3 | mm >> 13) & 0xffff for every pixel
    assert np.array_equal(((mm << 3) | (mm >> 13)) & 0xFFFF, raw.astype(np.int64))
    v = d[d > 0]
    assert 0.5 < np.median(v) < 6.0 and v.max() < 10.0
    naive = read_depth(p, 1000)
    assert np.median(naive[naive > 0]) > 8 * np.median(v) * 0.9  # unrotated reads ~8x too far


def test_nyu_raw_pgm(rgbd):
    p = rgbd / "NYU_depth.pgm"
    raw = read_pgm(p)
    pil = np.asarray(Image.open(p)).astype(np.uint16)  # Pillow follows the spec (big-endian)
    assert np.array_equal(raw, pil.byteswap())
    assert raw.max() <= 2047  # 11-bit Kinect disparity once read little-endian
    d = read_depth(p, None, encoding="nyu_raw")
    assert d.shape == (480, 640)
    assert np.all(d[raw == 2047] == 0)
    v = d[d > 0]
    assert 0.5 < v.min() and v.max() <= 10.0 and 1.0 < np.median(v) < 6.0
    color = np.asarray(Image.open(rgbd / "NYU_color.ppm"))
    assert color.shape[:2] == d.shape


@pytest.mark.parametrize("make,kwargs,reason", [
    (None, {}, "depth_missing"),
    (lambda p: p.write_bytes(b""), {}, "depth_empty"),
    (lambda p: p.write_bytes(b"not a png"), {}, "depth_unreadable"),
    (lambda p: Image.new("RGB", (4, 4)).save(p, format="PNG"), {}, "depth_bad_format"),
    (lambda p: Image.fromarray(np.full((4, 4), 7, np.uint16)).save(p, format="PNG"), {"depth_scale": 0}, "depth_bad_scale"),
    (lambda p: Image.fromarray(np.full((4, 4), 7, np.uint16)).save(p, format="PNG"), {"depth_scale": float("nan")}, "depth_bad_scale"),
    (lambda p: Image.fromarray(np.zeros((4, 4), np.uint16)).save(p, format="PNG"), {}, "depth_bad_values"),
    (lambda p: Image.fromarray(np.full((4, 4), 7, np.uint16)).save(p, format="PNG"), {"encoding": "exr"}, "depth_bad_encoding"),
])
def test_depth_failures(tmp_path, make, kwargs, reason):
    p = tmp_path / "d.png"
    if make:
        make(p)
    with pytest.raises(InputError) as e:
        read_depth(p, **{"depth_scale": 1000, **kwargs})
    assert e.value.reason == reason


def test_float_depth_nan_inf_negative_become_zero(tmp_path):
    a = np.array([[1.5, np.nan], [np.inf, -2.0]], np.float32)
    np.save(tmp_path / "d.npy", a)
    d = read_depth(tmp_path / "d.npy", None, encoding="float")
    assert d.tolist() == [[1.5, 0.0], [0.0, 0.0]]

"""image_io: EXIF orientation, odd modes, bomb limit, failure reasons, EXIF focal length."""
import numpy as np
import pytest
from PIL import Image

from lifting.sources.image_io import InputError, image_size, read_exif_focal_35mm, read_image


def _quadrants(w=40, h=20):
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)  # top-left red
    a[: h // 2, w // 2:] = (0, 255, 0)  # top-right green
    a[h // 2:] = (0, 0, 255)
    return a


@pytest.mark.parametrize("orientation,shape,top_left", [
    (1, (20, 40), (255, 0, 0)),
    (3, (20, 40), (0, 0, 255)),   # 180 degrees
    (6, (40, 20), (0, 0, 255)),   # rotate 90 CW to display: bottom-left goes to top-left
    (8, (40, 20), (0, 255, 0)),   # rotate 90 CCW to display: top-right goes to top-left
])
def test_exif_orientation_applied(tmp_path, orientation, shape, top_left):
    p = tmp_path / "o.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_quadrants()).save(p, quality=95, exif=exif)
    a = read_image(p)
    assert a.shape == (*shape, 3) and a.dtype == np.uint8
    assert np.abs(a[2, 2].astype(int) - top_left).max() < 40
    assert image_size(p) == (shape[1], shape[0])
    assert read_image(p, apply_exif=False).shape == (20, 40, 3)


def test_modes_converted_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (8, 6), (0, 255, 255, 0))  # red in CMYK
    cmyk.save(tmp_path / "c.jpg")
    a = read_image(tmp_path / "c.jpg")
    assert a.shape == (6, 8, 3) and a[0, 0, 0] > 200 and a[0, 0, 1] < 60
    Image.fromarray(np.full((6, 8), 65535, np.uint16)).save(tmp_path / "g16.png")
    assert (read_image(tmp_path / "g16.png") == 255).all()
    p = Image.new("P", (8, 6))
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.paste(1, (0, 0, 8, 6))
    p.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[0, 0].tolist() == [10, 200, 30]
    Image.new("LA", (8, 6), (100, 0)).save(tmp_path / "la.png")  # fully transparent -> white
    assert (read_image(tmp_path / "la.png") == 255).all()
    Image.new("RGBA", (8, 6), (0, 0, 255, 255)).save(tmp_path / "rgba.webp", lossless=True)
    assert read_image(tmp_path / "rgba.webp")[0, 0].tolist() == [0, 0, 255]


@pytest.mark.parametrize("make,kw,reason", [
    (None, {}, "image_missing"),
    (lambda p: p.write_bytes(b""), {}, "image_empty"),
    (lambda p: p.write_text("hello, not an image"), {}, "image_unreadable"),
    (lambda p: Image.new("RGB", (100, 100)).save(p, format="JPEG"), {"max_pixels": 5000}, "image_too_large"),
])
def test_failures(tmp_path, make, kw, reason):
    p = tmp_path / "x.jpg"
    if make:
        make(p)
    with pytest.raises(InputError) as e:
        read_image(p, **kw)
    assert e.value.reason == reason


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        read_image(tmp_path / "t.jpg")
    assert e.value.reason == "image_truncated"


def test_exif_focal_35mm(tmp_path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[41989] = 28
    Image.new("RGB", (16, 12)).save(tmp_path / "f.jpg", exif=exif)
    assert read_exif_focal_35mm(tmp_path / "f.jpg") == 28.0
    Image.new("RGB", (16, 12)).save(tmp_path / "n.jpg")
    assert read_exif_focal_35mm(tmp_path / "n.jpg") is None
    assert read_exif_focal_35mm(tmp_path / "missing.jpg") is None

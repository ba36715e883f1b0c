"""Plain image folder: recursive, formats, deterministic order, keys, bad files."""
from collections import Counter

from PIL import Image

from lifting.records import ErrorRecord, ImageRecord
from lifting.sources import open_source


def test_folder_source(tmp_path):
    root = tmp_path / "photos"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a").mkdir()
    for rel, fmt in [("z.JPG", "JPEG"), ("a/x.png", "PNG"), ("b/deep/y.webp", "WEBP"), ("b/w.bmp", "BMP"),
                     ("b/v.tif", "TIFF"), ("a/u.jpeg", "JPEG")]:
        Image.new("RGB", (4, 3)).save(root / rel, format=fmt)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(b"x")
    (root / "a" / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (4, 3)).save(root / "a-x.png")  # the key of a/x.png before keys hashed lossy names
    src = open_source("images", images=root)
    recs = list(src.iter_records())
    imgs = [r for r in recs if isinstance(r, ImageRecord)]
    errs = [r for r in recs if isinstance(r, ErrorRecord)]
    assert sorted(r.image_id for r in imgs) == ["a-x.png", "a/u.jpeg", "a/x.png", "b/deep/y.webp", "b/v.tif",
                                                "b/w.bmp", "z.JPG"]
    assert len({r.key for r in imgs}) == 7  # distinct paths, distinct keys
    assert all(r.key.startswith("images_") and r.objects == [] and r.width is None for r in imgs)
    assert {r.image_id: r.image_path for r in imgs}["b/deep/y.webp"] == str(root / "b" / "deep" / "y.webp")
    assert Counter((e.reason, e.image_id) for e in errs) == {("image_empty", "a/empty.jpg"): 1,
                                                             ("image_hidden", ".hidden.jpg"): 1}
    st = src.stats()
    assert st["images_in"] == 9 and st["accounting_ok"]
    # same order again (deterministic), also when grouped through on-disk buckets
    again = open_source("images", images=root, buckets=3)
    assert sorted(r.key for r in again.iter_records() if isinstance(r, ImageRecord)) == sorted(r.key for r in imgs)
    assert again.stats()["accounting_ok"]

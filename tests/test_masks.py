"""lifting.masks: COCO polygons / RLE decode and validation against pycocotools' COCO API."""
import json
from pathlib import Path

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from lifting.masks import (decode_segmentation, decode_segmentation_crop, encode_mask, rle_string_to_counts,
                           segmentation_area, validate_segmentation)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_JSON = DATA / "coco-mini" / "annotations" / "instances_val2017.json"


def test_polygon_square_exact_area():
    # a 10 x 20 px axis-aligned rectangle with pixel-edge corners covers exactly 200 pixels
    seg = [[5, 5, 15, 5, 15, 25, 5, 25]]
    m = decode_segmentation(seg, 40, 30)
    assert m.shape == (40, 30) and m.dtype == bool
    assert m.sum() == 200
    ys, xs = np.nonzero(m)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (5, 14, 5, 24)
    assert segmentation_area(seg, 40, 30) == 200


def test_rle_list_and_string_counts_decode_identically():
    rng = np.random.default_rng(0)
    mask = rng.random((23, 17)) > 0.6
    rle = encode_mask(mask)
    assert np.array_equal(decode_segmentation(rle, 23, 17), mask)
    counts = rle_string_to_counts(rle["counts"])
    assert sum(counts) == 23 * 17
    as_list = {"size": [23, 17], "counts": counts}
    assert validate_segmentation(as_list, 23, 17) is None
    assert np.array_equal(decode_segmentation(as_list, 23, 17), mask)


@pytest.mark.parametrize("seg,reason", [
    ([[1, 1, 5, 1]], "mask_polygon_too_few_points"),
    ([[1, 1, 5, 1, 5, 5, 1]], "mask_polygon_odd_length"),
    ([[1, 1, 5, float("nan"), 5, 5]], "mask_polygon_nonfinite"),
    ([], "mask_empty"),
    ([[100, 100, 120, 100, 120, 120]], "mask_empty"),  # entirely outside a 10 x 10 image
    ([["a", 1, 2, 3, 4, 5]], "mask_malformed"),
    ("polygon", "mask_malformed"),
    ({"size": [10, 11], "counts": [100]}, "mask_rle_size_mismatch"),
    ({"size": [10, 10], "counts": [50, 60]}, "mask_rle_counts_mismatch"),  # would overrun the buffer
    ({"size": [10, 10], "counts": [50, -5, 55]}, "mask_malformed"),
    ({"size": [10, 10], "counts": "\x01\x02"}, "mask_malformed"),
    ({"size": [10, 10], "counts": [100]}, "mask_empty"),
    ({"counts": [100]}, "mask_malformed"),
])
def test_validation_reason_codes(seg, reason):
    assert validate_segmentation(seg, 10, 10) == reason


def test_decode_refuses_overlong_rle_instead_of_overrunning():
    with pytest.raises(ValueError, match="mask_rle_counts_mismatch"):
        decode_segmentation({"size": [4, 4], "counts": [10, 100]}, 4, 4)


def test_coco_mini_masks_match_pycocotools_reference():
    if not COCO_JSON.exists():
        pytest.skip(f"shared sample data not found at {COCO_JSON}")
    from pycocotools.coco import COCO

    coco = COCO.__new__(COCO)
    coco.dataset = json.loads(COCO_JSON.read_text())
    coco.anns, coco.cats, coco.imgs = {}, {}, {}
    coco.createIndex()
    anns = coco.dataset["annotations"]
    crowd = [a for a in anns if a["iscrowd"]]
    sample = crowd + anns[:: max(1, len(anns) // 60)]
    for a in sample:
        img = coco.imgs[a["image_id"]]
        assert validate_segmentation(a["segmentation"], img["height"], img["width"]) is None
        ours = decode_segmentation(a["segmentation"], img["height"], img["width"])
        assert np.array_equal(ours, coco.annToMask(a).astype(bool)), a["id"]
        assert_crop_matches(a["segmentation"], img["height"], img["width"])
    assert len(crowd) == 5


def assert_crop_matches(seg, h, w):
    """decode_segmentation_crop gives the full decode's pixels, in their tight box (or the
    same refusal)."""
    try:
        full = decode_segmentation(seg, h, w)
    except ValueError as e:
        with pytest.raises(ValueError, match=str(e)):
            decode_segmentation_crop(seg, h, w)
        return
    got = decode_segmentation_crop(seg, h, w)
    if not full.any():
        assert got is None
        return
    crop, r0, c0 = got
    rows, cols = np.nonzero(full)
    assert (r0, c0) == (rows.min(), cols.min())
    assert crop.shape == (rows.max() - r0 + 1, cols.max() - c0 + 1)
    assert crop.dtype == bool
    assert np.array_equal(crop, full[r0:r0 + crop.shape[0], c0:c0 + crop.shape[1]])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_crop_decode_of_rle_matches_full_decode(h, w, seed, density):
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), dtype=bool)
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    y1, x1 = rng.integers(y0, h + 1), rng.integers(x0, w + 1)
    mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < density
    rle = encode_mask(mask)
    assert_crop_matches(rle, h, w)
    assert_crop_matches({"size": [h, w], "counts": rle_string_to_counts(rle["counts"])}, h, w)


coord = st.floats(-15.0, 75.0, allow_nan=False, width=32)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(coord, coord), min_size=3, max_size=8), min_size=1, max_size=3))
def test_crop_decode_of_polygons_matches_full_decode(polys):
    # vertices off the image on every side, fractional and negative coordinates: the crop
    # window must rasterise exactly what pycocotools does on the whole 48 x 60 image
    seg = [[float(v) for xy in p for v in xy] for p in polys]
    assert_crop_matches(seg, 48, 60)


def test_crop_decode_rejects_what_decode_rejects():
    with pytest.raises(ValueError, match="mask_rle_counts_mismatch"):
        decode_segmentation_crop({"size": [4, 4], "counts": [10, 100]}, 4, 4)
    assert decode_segmentation_crop({"size": [4, 4], "counts": [16, 0]}, 4, 4) is None  # no foreground pixel

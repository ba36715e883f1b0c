"""Table-driven bad input: each malformed input -> its reason code, and the counts add up.

Base dataset per format: 2 images with 2 annotations each, all valid. Each case applies
one mutation and states the exact multiset of (level, reason) errors it must produce.
"""
import copy
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from lifting.records import ErrorRecord, ImageRecord
from lifting.sources import open_source

W, H = 64, 48


def _coco_base():
    images = [{"id": 1, "file_name": "a.jpg", "width": W, "height": H},
              {"id": 2, "file_name": "b.jpg", "width": W, "height": H}]
    anns = [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": 0,
             "segmentation": [[1, 1, 11, 1, 11, 11, 1, 11]]},
            {"id": 11, "image_id": 1, "category_id": 2, "bbox": [20, 5, 10, 20], "iscrowd": 0},
            {"id": 20, "image_id": 2, "category_id": 1, "bbox": [2, 2, 30, 30], "iscrowd": 0},
            {"id": 21, "image_id": 2, "category_id": 2, "bbox": [40, 10, 8, 8], "iscrowd": 1,
             "segmentation": {"size": [H, W], "counts": [500, 64, W * H - 564]}}]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "chair"}, {"id": 2, "name": "Dining Table"}]}


def _omni_base():
    d = _coco_base()
    for im in d["images"]:
        im.update(K=[[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]], depth_file=im["file_name"].replace(".jpg", ".png"),
                  depth_scale=1000)
    d["annotations"][0].update(center_cam=[0, 0, 2.0], dimensions=[0.5, 0.8, 0.5],
                               R_cam=np.eye(3).tolist())
    return d


def _ann(d, aid):
    return next(a for a in d["annotations"] if a["id"] == aid)


# (case id, format, mutation(data, folder) -> None, extra images_in, extra annotations_in,
#  expected Counter of (level, reason))
COCO_CASES = [
    ("image_missing", "coco", lambda d, p: (p / "a.jpg").unlink(), 0, 0,
     {("image", "image_missing"): 1, ("object", "parent_image_failed"): 2}),
    ("image_empty", "coco", lambda d, p: (p / "b.jpg").write_bytes(b""), 0, 0,
     {("image", "image_empty"): 1, ("object", "parent_image_failed"): 2}),
    ("image_bad_size", "coco", lambda d, p: d["images"][0].update(width=0), 0, 0,
     {("image", "image_bad_size"): 1, ("object", "parent_image_failed"): 2}),
    ("image_missing_field", "coco", lambda d, p: d["images"][1].pop("file_name"), 0, 0,
     {("image", "image_missing_field"): 1, ("object", "parent_image_failed"): 2}),
    ("image_without_id", "coco", lambda d, p: d["images"].append({"file_name": "a.jpg", "width": W, "height": H}),
     1, 0, {("image", "image_missing_field"): 1}),
    ("image_not_an_object", "coco", lambda d, p: d["images"].append("b.jpg"), 1, 0,
     {("image", "image_malformed"): 1}),
    ("duplicate_image_id", "coco", lambda d, p: d["images"].append(dict(d["images"][0], file_name="b.jpg")), 1, 0,
     {("image", "duplicate_image_id"): 1}),
    ("duplicate_annotation_id", "coco", lambda d, p: d["annotations"].append(dict(_ann(d, 20), image_id=1)), 0, 1,
     {("object", "duplicate_annotation_id"): 1}),
    ("unknown_image_id", "coco", lambda d, p: d["annotations"].append(dict(_ann(d, 20), id=99, image_id=7)), 0, 1,
     {("object", "unknown_image_id"): 1}),
    ("ann_missing_image_id", "coco", lambda d, p: _ann(d, 11).pop("image_id"), 0, 0,
     {("object", "ann_missing_field"): 1}),
    ("ann_missing_category", "coco", lambda d, p: _ann(d, 11).pop("category_id"), 0, 0,
     {("object", "ann_missing_field"): 1}),
    ("unknown_category", "coco", lambda d, p: _ann(d, 11).update(category_id=42), 0, 0,
     {("object", "unknown_category"): 1}),
    ("bbox_out_of_image", "coco", lambda d, p: _ann(d, 11).update(bbox=[W + 5, 5, 10, 10]), 0, 0,
     {("object", "bbox_out_of_image"): 1}),
    ("bbox_exceeds_image", "coco", lambda d, p: _ann(d, 11).update(bbox=[W - 5, 5, 30, 10]), 0, 0,
     {("object", "bbox_exceeds_image"): 1}),
    ("bbox_zero_width", "coco", lambda d, p: _ann(d, 11).update(bbox=[5, 5, 0, 10]), 0, 0,
     {("object", "bbox_non_positive_size"): 1}),
    ("bbox_negative_height", "coco", lambda d, p: _ann(d, 20).update(bbox=[5, 5, 4, -3]), 0, 0,
     {("object", "bbox_non_positive_size"): 1}),
    ("bbox_nan", "coco", lambda d, p: _ann(d, 11).update(bbox=[5, float("nan"), 4, 3]), 0, 0,
     {("object", "bbox_nonfinite"): 1}),
    ("bbox_three_numbers", "coco", lambda d, p: _ann(d, 11).update(bbox=[5, 5, 4]), 0, 0,
     {("object", "bbox_malformed"): 1}),
    ("bbox_missing", "coco", lambda d, p: _ann(d, 20).pop("bbox"), 0, 0,
     {("object", "bbox_malformed"): 1}),
    ("polygon_too_few_points", "coco", lambda d, p: _ann(d, 10).update(segmentation=[[1, 1, 5, 5]]), 0, 0,
     {("object", "mask_polygon_too_few_points"): 1}),
    ("polygon_odd_length", "coco", lambda d, p: _ann(d, 10).update(segmentation=[[1, 1, 5, 5, 9, 1, 3]]), 0, 0,
     {("object", "mask_polygon_odd_length"): 1}),
    ("rle_size_mismatch", "coco", lambda d, p: _ann(d, 21)["segmentation"].update(size=[H + 1, W]), 0, 0,
     {("object", "mask_rle_size_mismatch"): 1}),
    ("rle_counts_overrun", "coco", lambda d, p: _ann(d, 21)["segmentation"].update(counts=[500, 64, W * H]), 0, 0,
     {("object", "mask_rle_counts_mismatch"): 1}),
    ("rle_garbage_string", "coco", lambda d, p: _ann(d, 21)["segmentation"].update(counts="\x7f\x01"), 0, 0,
     {("object", "mask_malformed"): 1}),
    ("ann_not_an_object", "coco", lambda d, p: d["annotations"].append([1, 2, 3]), 0, 1,
     {("object", "ann_malformed"): 1}),
    ("omni3d_zero_focal", "omni3d", lambda d, p: d["images"][0]["K"][0].__setitem__(0, 0.0), 0, 0,
     {("image", "bad_intrinsics_focal"): 1, ("object", "parent_image_failed"): 2}),
    ("omni3d_K_wrong_shape", "omni3d", lambda d, p: d["images"][1].update(K=[1, 2, 3]), 0, 0,
     {("image", "bad_intrinsics_shape"): 1, ("object", "parent_image_failed"): 2}),
    ("omni3d_depth_scale_zero", "omni3d", lambda d, p: d["images"][1].update(depth_scale=0), 0, 0,
     {("image", "depth_bad_scale"): 1, ("object", "parent_image_failed"): 2}),
    ("omni3d_depth_missing", "omni3d", lambda d, p: (p / "a.png").unlink(), 0, 0,
     {("image", "depth_missing"): 1, ("object", "parent_image_failed"): 2}),
    ("omni3d_bad_gt_dimensions", "omni3d", lambda d, p: _ann(d, 10).update(dimensions=[0.5, -1, 0.5]), 0, 0,
     {("object", "gt_box3d_invalid"): 1}),
    ("omni3d_gt_rotation_not_orthonormal", "omni3d", lambda d, p: _ann(d, 10).update(R_cam=[[2, 0, 0], [0, 1, 0], [0, 0, 1]]),
     0, 0, {("object", "gt_box3d_invalid"): 1}),
]


def _write_files(folder, names):
    for n in names:
        if n.endswith(".png"):
            Image.fromarray(np.full((H, W), 1500, np.uint16)).save(folder / n)
        else:
            (folder / n).write_bytes(b"\xff\xd8 not decoded while reading")


@pytest.mark.parametrize("case", COCO_CASES, ids=[c[0] for c in COCO_CASES])
def test_coco_format_malformed(tmp_path, case):
    _, fmt, mutate, extra_imgs, extra_anns, expected = case
    data = _coco_base() if fmt == "coco" else _omni_base()
    _write_files(tmp_path, ["a.jpg", "b.jpg"] + (["a.png", "b.png"] if fmt == "omni3d" else []))
    data = copy.deepcopy(data)
    mutate(data, tmp_path)
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(data))  # NaN written as a bare NaN token, as Python's json does
    src = open_source(fmt, annotations=f, images=tmp_path, check_files=True)
    recs = list(src.iter_records())
    errs = [r for r in recs if isinstance(r, ErrorRecord)]
    imgs = [r for r in recs if isinstance(r, ImageRecord)]
    assert Counter((e.level, e.reason) for e in errs) == Counter(expected)
    st = src.stats()
    assert st["images_in"] == 2 + extra_imgs and st["annotations_in"] == 4 + extra_anns
    assert st["accounting_ok"]
    assert len(imgs) + st["image_errors"] == st["images_in"]
    assert sum(len(r.objects) for r in imgs) + st["object_errors"] == st["annotations_in"]
    for e in errs:  # every error names what it lost where the input says it
        assert e.source == fmt and e.reason and e.level in ("image", "object")
        if e.image_id is not None:
            assert e.key == f"{fmt}_{e.image_id}"


# -- OpenImages --------------------------------------------------------------------------

OI_HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
OI_BASE = [
    "000a1249af2bc5f0,xclick,/m/01g317,1,0.1,0.5,0.2,0.9,0,0,0,0,0",
    "000a1249af2bc5f0,xclick,/m/0199g,1,0.5,0.9,0.1,0.4,1,0,0,0,0",
    "0b6f22bf3b586889,activemil,/m/01g317,1,0.0,1.0,0.0,1.0,0,1,0,0,-1",
    "0b6f22bf3b586889,xclick,/m/0199g,1,0.25,0.75,0.5,0.6,0,0,0,0,0",
]
OI_CASES = [
    ("openimages_group_of", 0, "0b6f22bf3b586889,xclick,/m/01g317,1,0.1,0.5,0.2,0.9,0,0,1,0,0", 1,
     {("object", "openimages_group_of"): 1}),
    ("openimages_depiction", 0, "000a1249af2bc5f0,xclick,/m/0199g,1,0.1,0.5,0.2,0.9,0,0,0,1,0", 1,
     {("object", "openimages_depiction"): 1}),
    ("coordinates_outside_unit_square", 0, "000a1249af2bc5f0,xclick,/m/0199g,1,0.1,1.5,0.2,0.9,0,0,0,0,0", 1,
     {("object", "bbox_normalized_out_of_range"): 1}),
    ("xmax_before_xmin", 0, "000a1249af2bc5f0,xclick,/m/0199g,1,0.6,0.5,0.2,0.9,0,0,0,0,0", 1,
     {("object", "bbox_non_positive_size"): 1}),
    ("unknown_mid", 0, "000a1249af2bc5f0,xclick,/m/0xxxx,1,0.1,0.5,0.2,0.9,0,0,0,0,0", 1,
     {("object", "unknown_category"): 1}),
    ("non_numeric_coordinate", 0, "000a1249af2bc5f0,xclick,/m/0199g,1,abc,0.5,0.2,0.9,0,0,0,0,0", 1,
     {("object", "bbox_malformed"): 1}),
    ("nan_coordinate", 0, "000a1249af2bc5f0,xclick,/m/0199g,1,nan,0.5,0.2,0.9,0,0,0,0,0", 1,
     {("object", "bbox_nonfinite"): 1}),
    ("short_row", 0, "000a1249af2bc5f0,xclick,/m/0199g", 1, {("object", "ann_malformed"): 1}),
    ("new_image_group_of_only", 1, "1111111111111111,xclick,/m/01g317,1,0.1,0.5,0.2,0.9,0,0,1,0,0", 1,
     {("object", "openimages_group_of"): 1}),
]


@pytest.mark.parametrize("case", OI_CASES, ids=[c[0] for c in OI_CASES])
def test_openimages_malformed(tmp_path, case):
    _, extra_imgs, row, extra_anns, expected = case
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("\n".join([OI_HEADER, *OI_BASE, row]) + "\n")
    classes = tmp_path / "classes.csv"
    classes.write_text("/m/01g317,Person\n/m/0199g,Bicycle\n")
    src = open_source("openimages", annotations=boxes, images=tmp_path, class_descriptions=classes)
    recs = list(src.iter_records())
    errs = [r for r in recs if isinstance(r, ErrorRecord)]
    assert Counter((e.level, e.reason) for e in errs) == Counter(expected)
    st = src.stats()
    assert st["images_in"] == 2 + extra_imgs and st["annotations_in"] == 4 + extra_anns and st["accounting_ok"]
    # every error points back at its CSV data row (the appended row is row 5)
    assert [e.source_ann_id for e in errs] == [5]


def test_openimages_missing_image_file(tmp_path):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("\n".join([OI_HEADER, *OI_BASE]) + "\n")
    (tmp_path / "classes.csv").write_text("/m/01g317,Person\n/m/0199g,Bicycle\n")
    (tmp_path / "000a1249af2bc5f0.jpg").write_bytes(b"x")
    src = open_source("openimages", annotations=boxes, images=tmp_path, class_descriptions=tmp_path / "classes.csv",
                      check_files=True)
    errs = [r for r in src.iter_records() if isinstance(r, ErrorRecord)]
    assert Counter((e.level, e.reason) for e in errs) == {("image", "image_missing"): 1,
                                                          ("object", "parent_image_failed"): 2}
    assert src.stats()["accounting_ok"]

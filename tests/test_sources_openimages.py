"""OpenImages CSV reader on generated files in the official column layout."""
from collections import Counter

import pytest

from lifting.records import ErrorRecord, ImageRecord
from lifting.sources import open_source
from lifting.sources.openimages import denormalize_boxes

HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
BOXES = [
    "000002b66c9c498e,xclick,/m/01g317,1,0.0125,0.195312,0.148438,0.5875,0,1,0,0,0",
    "000002b66c9c498e,xclick,/m/0284d,1,0.6,0.9,0.3,0.45,1,0,0,0,0",
    "000002b66c9c498e,xclick,/m/01g317,1,0.2,0.8,0.1,0.9,0,0,1,0,0",      # group of
    "000002b97e5471a0,xclick,/m/0284d,1,0.1,0.3,0.1,0.3,0,0,0,1,0",       # depiction
    "000002b97e5471a0,activemil,/m/02wbm,1,0.5,0.75,0.25,0.5,-1,-1,0,0,-1",
]
CLASSES = "LabelName,DisplayName\n/m/01g317,Person\n/m/0284d,Dairy Product\n/m/02wbm,Food\n/m/0ch_cf,Fish\n"
LABELS = "\n".join([
    "ImageID,Source,LabelName,Confidence",
    "000002b66c9c498e,verification,/m/01g317,1",
    "000002b66c9c498e,verification,/m/0ch_cf,0",
    "000002b97e5471a0,crowdsource-verified,/m/02wbm,1",
    "000002b97e5471a0,verification,/m/zzzz,1",
    "00000c4c3c1d5c2b,verification,/m/0ch_cf,1",   # image with labels only
]) + "\n"
IMAGE_LIST = "ImageID,Subset,OriginalURL,Rotation\n000002b66c9c498e,train,http://x/a.jpg,90.0\n0000aaaa00000000,train,http://x/b.jpg,0.0\n"


def _files(tmp_path):
    (tmp_path / "boxes.csv").write_text("\n".join([HEADER, *BOXES]) + "\n")
    (tmp_path / "classes.csv").write_text(CLASSES)
    (tmp_path / "labels.csv").write_text(LABELS)
    (tmp_path / "images.csv").write_text(IMAGE_LIST)
    return dict(annotations=tmp_path / "boxes.csv", images=tmp_path / "img", class_descriptions=tmp_path / "classes.csv",
                labels=tmp_path / "labels.csv", image_list=tmp_path / "images.csv")


@pytest.mark.parametrize("spill", [False, True])
def test_openimages_round_trip(tmp_path, spill):
    kw = _files(tmp_path)
    if spill:
        kw.update(in_memory_bytes=0, buckets=3)
    src = open_source("openimages", **kw)
    recs = list(src.iter_records())
    imgs = {r.image_id: r for r in recs if isinstance(r, ImageRecord)}
    errs = [r for r in recs if isinstance(r, ErrorRecord)]
    # images: 2 with boxes + 1 labels-only + 1 listed-only
    assert set(imgs) == {"000002b66c9c498e", "000002b97e5471a0", "00000c4c3c1d5c2b", "0000aaaa00000000"}
    assert Counter(e.reason for e in errs) == {"openimages_group_of": 1, "openimages_depiction": 1}
    assert {e.source_ann_id for e in errs} == {3, 4}
    st = src.stats()
    assert (st["images_in"], st["annotations_in"], st["objects_ok"], st["accounting_ok"]) == (4, 5, 3, True)

    a = imgs["000002b66c9c498e"]
    assert a.width is None and a.height is None and a.image_path.endswith("img/000002b66c9c498e.jpg")
    assert a.tags == ["person"] and a.extra["negative_tags"] == ["fish"]
    assert a.extra["Rotation"] == "90.0" and a.extra["OriginalURL"] == "http://x/a.jpg"
    o = a.objects[0]
    assert (o.category, o.category_raw, o.category_id) == ("person", "/m/01g317", "/m/01g317")
    assert o.bbox_xyxy == pytest.approx([0.0125, 0.148438, 0.195312, 0.5875])
    assert o.attributes["bbox_normalized"] is True and o.attributes["IsTruncated"] == 1
    assert o.object_id == "openimages_000002b66c9c498e-1" and o.source_ann_id == 1
    assert a.objects[1].category == "dairy product" and a.objects[1].attributes["IsOccluded"] == 1
    b = imgs["000002b97e5471a0"]
    assert b.tags == ["food"] and b.extra["labels_unknown_mid"] == 1
    assert b.objects[0].attributes["IsInside"] == -1 and b.objects[0].attributes["Source"] == "activemil"
    assert imgs["00000c4c3c1d5c2b"].tags == ["fish"] and imgs["00000c4c3c1d5c2b"].objects == []

    denormalize_boxes(a, 1024, 768)
    assert (a.width, a.height) == (1024, 768)
    assert a.objects[0].bbox_xyxy == pytest.approx([12.8, 0.148438 * 768, 0.195312 * 1024, 0.5875 * 768])
    assert "bbox_normalized" not in a.objects[0].attributes


def test_keep_group_of_and_depictions_option(tmp_path):
    src = open_source("openimages", keep_group_of=True, keep_depictions=True, **_files(tmp_path))
    recs = list(src.iter_records())
    assert not any(isinstance(r, ErrorRecord) for r in recs)
    objs = [o for r in recs for o in r.objects]
    assert len(objs) == 5 and sum(o.attributes["IsGroupOf"] == 1 for o in objs) == 1


def test_duplicate_row_in_image_list(tmp_path):
    kw = _files(tmp_path)
    (tmp_path / "images.csv").write_text(IMAGE_LIST + "0000aaaa00000000,train,http://x/c.jpg,0.0\n")
    src = open_source("openimages", **kw)
    errs = [r for r in src.iter_records() if isinstance(r, ErrorRecord)]
    assert Counter(e.reason for e in errs)["duplicate_image_id"] == 1
    assert src.stats()["images_in"] == 5 and src.stats()["accounting_ok"]

"""Property-based fuzzing (hypothesis) of everything that parses third-party bytes (issue 11, item 2).

Targets: the COCO / Omni3D JSON readers (random document structure and values), the
OpenImages CSV reader (random rows, including bytes that are not UTF-8), the `Bbox(...)`
parser, the COCO mask decoder and the repository tar reader. The property is the same
everywhere: the reader returns a result or its documented error - never another exception -
and the source accounting identity holds. Budget: 200 examples per target, no deadline,
derandomised so CI runs the same examples every time. atheris is not used here: its
libFuzzer runs are open-ended and abort the process on a crash, which suits a separate
fuzzing job, not the bounded test suite (see RELIABILITY.md).
"""
from __future__ import annotations

import io
import json
import math
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# -- JSON values that readers meet in the wild ------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["../../etc/passwd", "/etc/passwd", "a\x00.jpg",
                                                           "x\udcff.jpg", "", "a.jpg", "0", "1"]))
json_any = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                        max_leaves=20)
ids = st.one_of(st.integers(-2, 4), st.sampled_from(["1", "2", "a.b", "a-b", "", "\udcff"]), st.none(), st.floats())
numbers = st.one_of(st.integers(-50, 300), st.floats(-1e3, 1e3), st.just(float("nan")), st.just(float("inf")),
                    st.text(max_size=3), st.none())
bbox = st.one_of(st.lists(numbers, min_size=0, max_size=6), json_any)
segm = st.one_of(st.none(), st.lists(st.lists(numbers, max_size=10), max_size=3),
                 st.fixed_dictionaries({"size": st.lists(st.integers(-1, 50), max_size=3),
                                        "counts": st.one_of(st.lists(st.integers(-5, 3000), max_size=6),
                                                            st.text(max_size=10))}), json_any)
matrix = st.one_of(st.lists(st.lists(numbers, min_size=3, max_size=3), min_size=3, max_size=3), json_any)

image_entry = st.one_of(
    st.fixed_dictionaries({"id": ids, "file_name": st.one_of(st.sampled_from(["a.jpg", "b.jpg", "../x.jpg",
                                                                               "/abs.jpg", "c\udcff.jpg"]), scalars),
                           "width": st.one_of(st.integers(-2, 64), scalars), "height": st.one_of(st.integers(-2, 48), scalars)},
                          optional={"K": matrix, "depth_file": st.one_of(st.just("a.png"), scalars),
                                    "depth_scale": numbers, "gravity_cam": st.lists(numbers, max_size=4),
                                    "extra": scalars}),
    json_any)
ann_entry = st.one_of(
    st.fixed_dictionaries({"id": ids, "image_id": ids, "category_id": ids, "bbox": bbox},
                          optional={"segmentation": segm, "iscrowd": scalars, "center_cam": st.lists(numbers, max_size=4),
                                    "dimensions": st.lists(numbers, max_size=4), "R_cam": matrix,
                                    "bbox2D_tight": st.lists(numbers, max_size=5), "note": scalars}),
    json_any)
category = st.one_of(st.fixed_dictionaries({"id": ids, "name": st.one_of(st.text(max_size=8), scalars)}), json_any)
coco_doc = st.fixed_dictionaries({}, optional={"images": st.one_of(st.lists(image_entry, max_size=6), json_any),
                                               "annotations": st.one_of(st.lists(ann_entry, max_size=10), json_any),
                                               "categories": st.one_of(st.lists(category, max_size=4), json_any)})


def _check_records(src, records):
    """Every record serialises to strict UTF-8 JSON and the accounting identity holds."""
    from lifting.records import ImageRecord

    for r in records:
        blob = json.dumps(r.to_dict(), ensure_ascii=False, allow_nan=True)
        blob.encode("utf-8")  # raises on lone surrogates: the writers could not store it
        if isinstance(r, ImageRecord) and src.images is not None and r.image_path and "://" not in r.image_path:
            assert r.image_path.startswith(src.images), r.image_path
    s = src.stats()
    assert s["accounting_ok"], s


@pytest.mark.parametrize("name", ["coco", "omni3d"])
@FUZZ
@given(doc=coco_doc, streamed=st.booleans())
def test_coco_format_readers_never_crash(tmp_path_factory, name, doc, streamed):
    from lifting.sources import SourceConfigError, open_source

    d = tmp_path_factory.mktemp("fz")
    (d / "img").mkdir()
    p = d / "ann.json"
    p.write_text(json.dumps(doc))  # bare NaN / Infinity tokens as Python writes them; \udcff escaped
    # streamed=True forces the ijson + on-disk bucket path, the one used for large files
    opts = {"in_memory_bytes": 0, "buckets": 3} if streamed else {}
    src = open_source(name, annotations=p, images=d / "img", **opts)
    try:
        records = list(src.iter_records())
    except SourceConfigError:
        return  # a whole-file problem: one clear error, documented
    _check_records(src, records)


csv_cell = st.one_of(st.text(max_size=6), st.sampled_from(["0.1", "0.9", "nan", "inf", "-1", "2", "/m/a", "/m/zz",
                                                            "../../x", "1", "0", ""]))


@FUZZ
@given(rows=st.lists(st.lists(csv_cell, min_size=0, max_size=15), max_size=12),
       garbage=st.lists(st.binary(max_size=8), max_size=3))
def test_openimages_csv_reader_never_crashes(tmp_path_factory, rows, garbage):
    import csv

    from lifting.sources import SourceConfigError, open_source
    from lifting.sources.openimages import BOX_COLUMNS

    d = tmp_path_factory.mktemp("oi")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(BOX_COLUMNS)
    for r in rows:
        w.writerow(r)
    data = buf.getvalue().encode("utf-8", "surrogatepass") + b"".join(garbage)  # raw bytes, maybe not UTF-8
    (d / "boxes.csv").write_bytes(data)
    (d / "classes.csv").write_bytes(b"/m/a,Apple\n/m/b,Caf\xe9\n")  # Latin-1 byte in a display name
    src = open_source("openimages", annotations=d / "boxes.csv", images=d, class_descriptions=d / "classes.csv")
    try:
        records = list(src.iter_records())
    except SourceConfigError:
        return
    _check_records(src, records)


bbox_like = st.one_of(
    st.text(max_size=60),
    st.builds(lambda c, nums, sep: "Bbox(" + c + sep + sep.join(nums) + ")",
              st.text(max_size=10), st.lists(st.sampled_from(["1", "-2", "0.5", "3.", "1e3", "nan", "9" * 400, " 7 ",
                                                              "", "-", "1.2.3"]), max_size=9),
              st.sampled_from([",", ", ", ",,"])))


@FUZZ
@given(text=bbox_like, prefix=st.text(max_size=20))
def test_bbox_parser_returns_a_box_or_value_error(text, prefix):
    from lifting.bbox_text import BboxText, find_bboxes, parse_bbox

    for fn, arg in ((parse_bbox, text), (find_bboxes, prefix + text + prefix)):
        try:
            out = fn(arg)
        except ValueError:
            continue
        for b in out if isinstance(out, list) else [out]:
            assert isinstance(b, BboxText)
            assert all(math.isfinite(x) for x in (b.u, b.v, b.z, b.angle, b.sx, b.sy, b.sz))
            assert "\n" not in b.category and "Bbox(" not in b.category


@FUZZ
@given(category=st.text(min_size=1, max_size=15).map(str.strip).filter(lambda c: c and "\n" not in c and "Bbox(" not in c),
       nums=st.lists(st.integers(-10**6, 10**6), min_size=7, max_size=7))
def test_bbox_text_round_trips_for_any_category(category, nums):
    from lifting.bbox_text import BboxText, parse_bbox

    b = BboxText(category, nums[0] / 1000, nums[1] / 1000, *(n / 100 for n in nums[2:]))
    text = b.to_text()
    back = parse_bbox(text)
    assert back.to_text() == text and back.category == category


@FUZZ
@given(seg=segm, h=st.integers(0, 40), w=st.integers(0, 40))
def test_mask_decoder_returns_a_mask_or_a_reason(seg, h, w):
    from lifting.masks import decode_segmentation, validate_segmentation

    reason = validate_segmentation(seg, h, w, check_area=False)
    assert reason is None or (isinstance(reason, str) and reason.startswith("mask_"))
    try:
        m = decode_segmentation(seg, h, w)
    except ValueError:
        return
    assert reason is None and m.shape == (h, w) and m.dtype == bool


member = st.tuples(st.sampled_from(["k.json", "k.jpg", "a/k.json", "../k.json", "/abs.json", "a/../../k.json",
                                    "k", "..", "k.\udcff", "./k.json", "k\\..\\x.json"]),
                   st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE,
                                    tarfile.CHRTYPE, tarfile.FIFOTYPE]),
                   st.binary(max_size=16))


@FUZZ
@given(members=st.lists(member, max_size=5), cut=st.one_of(st.none(), st.integers(0, 4000)))
def test_repository_tar_reader_rejects_unsafe_members(tmp_path_factory, members, cut):
    from pathlib import PurePosixPath

    from lifting.repository import RepositoryError, iter_shard_samples

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, typ, data in members:
            ti = tarfile.TarInfo(name)
            ti.type = typ
            if typ == tarfile.REGTYPE:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                ti.linkname = "/etc/passwd" if typ in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
                t.addfile(ti)
    raw = buf.getvalue()
    p = tmp_path_factory.mktemp("tar") / "shard-000000.tar"
    p.write_bytes(raw if cut is None else raw[:cut])
    try:
        samples = list(iter_shard_samples(p))
    except RepositoryError as e:
        assert e.reason in ("unsafe_member_path", "unsafe_member_type", "shard_unreadable")
        return
    for name, typ, _ in members:  # accepted: only plain files with safe relative names
        assert typ == tarfile.REGTYPE or cut is not None
        parts = PurePosixPath(name).parts
        assert not name.startswith("/") and ".." not in parts
    for s in samples:
        assert ".." not in PurePosixPath(s["__key__"]).parts and not s["__key__"].startswith("/")

"""COCO reader and the streaming Parquet index: real coco-mini and generated files."""
import json
from collections import Counter
from pathlib import Path

import pytest

from lifting.records import ErrorRecord, ImageRecord
from lifting.sources import open_source
from lifting.sources.categories import normalize_category
from lifting.sources.index import build_index, list_partitions, read_partition, read_summary

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_JSON = DATA / "coco-mini" / "annotations" / "instances_val2017.json"
COCO_IMAGES = DATA / "coco-mini" / "val2017"


def _need_coco():
    if not COCO_JSON.exists():
        pytest.skip(f"shared sample data not found at {COCO_JSON}")


def _split(recs):
    return [r for r in recs if isinstance(r, ImageRecord)], [r for r in recs if isinstance(r, ErrorRecord)]


def test_coco_mini_reads_79_images_624_annotations():
    _need_coco()
    gt = json.loads(COCO_JSON.read_text())
    src = open_source("coco", annotations=COCO_JSON, images=COCO_IMAGES, check_files=True)
    imgs, errs = _split(list(src.iter_records()))
    assert len(imgs) == 79 and errs == []
    assert sum(len(r.objects) for r in imgs) == 624
    st = src.stats()
    assert (st["images_in"], st["annotations_in"], st["accounting_ok"]) == (79, 624, True)
    # every object matches its source annotation: bbox (xywh -> xyxy), category, crowd, mask
    anns = {a["id"]: a for a in gt["annotations"]}
    cats = {c["id"]: c["name"] for c in gt["categories"]}
    imgs_gt = {i["id"]: i for i in gt["images"]}
    for r in imgs:
        g = imgs_gt[r.image_id]
        assert (r.width, r.height) == (g["width"], g["height"])
        assert Path(r.image_path) == COCO_IMAGES / g["file_name"] and Path(r.image_path).is_file()
        assert r.key == f"coco_{r.image_id}"
        for o in r.objects:
            a = anns[o.source_ann_id]
            assert a["image_id"] == r.image_id
            x, y, w, h = a["bbox"]
            assert o.bbox_xyxy == pytest.approx([x, y, min(x + w, r.width), min(y + h, r.height)], abs=1e-9)
            assert o.category_raw == cats[a["category_id"]] and o.category == normalize_category(o.category_raw)
            assert o.iscrowd == bool(a["iscrowd"]) and o.segmentation == a["segmentation"]
            assert o.object_id == f"{r.key}-{a['id']}"
    assert sum(o.iscrowd for r in imgs for o in r.objects) == 5
    assert {o.category for r in imgs for o in r.objects} >= {"dining table", "person"}


def test_coco_mini_through_parquet_index_equals_direct(tmp_path):
    _need_coco()
    direct = [r.to_dict() for r in open_source("coco", annotations=COCO_JSON, images=COCO_IMAGES).iter_records()]
    summary = build_index("coco", COCO_JSON, COCO_IMAGES, tmp_path / "idx", buckets=3)
    assert summary["accounting_ok"] and summary["images_in"] == 79 and summary["annotations_in"] == 624
    parts = list_partitions(tmp_path / "idx")
    assert len(parts) == 3
    per_part = [list(read_partition(p)) for p in parts]
    assert all(len(p) > 0 for p in per_part)  # crc32 spreads 79 ids over all partitions
    back = [r.to_dict() for p in per_part for r in p]
    key = lambda d: d["key"]  # noqa: E731
    assert sorted(back, key=key) == sorted(direct, key=key)
    # a second build with the same inputs is reused, not rebuilt
    again = build_index("coco", COCO_JSON, COCO_IMAGES, tmp_path / "idx", buckets=3)
    assert again["reused"] is True and read_summary(tmp_path / "idx")["images_ok"] == 79
    src = open_source("index", annotations=tmp_path / "idx")
    assert sum(isinstance(r, ImageRecord) for r in src.iter_records()) == 79 and src.stats()["accounting_ok"]


def _generated_coco(n_images=60, anns_per_image=5, annotations_first=True):
    images = [{"id": i, "file_name": f"sub/{i:06d}.jpg", "width": 200, "height": 100} for i in range(1, n_images + 1)]
    anns, aid = [], 1000
    for im in images:
        for k in range(anns_per_image):
            x = 3.0 * k
            ann = {"id": aid, "image_id": im["id"], "category_id": 1 + k % 3, "bbox": [x, 2.0, 20.0, 10.0],
                   "iscrowd": 0, "area": 200.0,
                   "segmentation": [[x, 2, x + 20, 2, x + 20, 12, x, 12]]}
            anns.append(ann)
            aid += 1
    # one duplicate annotation id on a *different* image (lands in another bucket)
    anns.append(dict(anns[0], image_id=images[-1]["id"]))
    cats = [{"id": 1, "name": "dining table"}, {"id": 2, "name": "Sneakers"}, {"id": 3, "name": "Cabinet/shelf"}]
    body = {"annotations": anns, "categories": cats, "images": images} if annotations_first else \
        {"images": images, "annotations": anns, "categories": cats}
    return body


@pytest.mark.parametrize("annotations_first", [True, False])
def test_streamed_spilled_reading_equals_in_memory(tmp_path, annotations_first):
    body = _generated_coco(annotations_first=annotations_first)
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(body))
    mem = open_source("coco", annotations=f, images=tmp_path)
    a = [r.to_dict() for r in mem.iter_records()]
    # force ijson streaming (in_memory_bytes=0) and 5 on-disk buckets
    spill = open_source("coco", annotations=f, images=tmp_path, in_memory_bytes=0, bucket_bytes=len(f.read_bytes()) // 5)
    b = [r.to_dict() for r in spill.iter_records()]
    k = lambda d: (d.get("key") or "", d.get("reason", ""))  # noqa: E731
    assert sorted(a, key=k) == sorted(b, key=k)
    for st in (mem.stats(), spill.stats()):
        assert st["images_in"] == 60 and st["annotations_in"] == 301 and st["accounting_ok"]
        assert st["objects_ok"] == 300 and st["errors_by_reason"] == {"object:duplicate_annotation_id": 1}
    cats = Counter(o["category"] for d in b if "objects" in d for o in d["objects"])
    assert set(cats) == {"dining table", "sneakers", "cabinet"}


def test_index_of_streamed_file_round_trips(tmp_path):
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(_generated_coco(n_images=40)))
    s = build_index("coco", f, tmp_path, tmp_path / "idx", in_memory_bytes=0, buckets=4)
    assert len(s["partitions"]) == 4 and s["accounting_ok"]
    recs = [r for p in list_partitions(tmp_path / "idx") for r in read_partition(p)]
    imgs, errs = _split(recs)
    assert len(imgs) == 40 and sum(len(r.objects) for r in imgs) == 200
    assert [e.reason for e in errs] == ["duplicate_annotation_id"] and errs[0].source_ann_id == 1000
    assert not (tmp_path / "idx" / "_spill").exists()


def test_index_built_by_worker_processes_has_the_bytes_of_one_process(tmp_path):
    """workers > 1 assembles and writes the spilled buckets in spawned processes: the same
    partition and error files, byte for byte, and the same summary, errors included."""
    body = _generated_coco(n_images=40)
    body["annotations"] += [
        {"id": 5000, "category_id": 1, "bbox": [1, 2, 3, 4]},  # no image_id: an error while streaming
        {"id": 5001, "image_id": 999, "category_id": 1, "bbox": [1, 2, 3, 4]},  # no such image
        {"id": 5002, "image_id": 3, "category_id": 1, "bbox": [500, 2, 3, 4]},  # outside the image
    ]
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(body))
    summary = {w: build_index("coco", f, tmp_path, tmp_path / f"idx{w}", in_memory_bytes=0, buckets=4, workers=w)
               for w in (1, 2)}
    names = sorted(p.name for p in (tmp_path / "idx1").glob("*.parquet"))
    assert names == ["errors.parquet"] + [f"part-{b:05d}.parquet" for b in range(4)]
    for name in names:
        assert (tmp_path / "idx2" / name).read_bytes() == (tmp_path / "idx1" / name).read_bytes(), name
    timing = ("elapsed_s", "annotations_per_s")
    one, two = ({k: v for k, v in s.items() if k not in timing} for s in (summary[1], summary[2]))
    assert two == one and one["accounting_ok"]
    assert one["errors_by_reason"] == {"object:ann_missing_field": 1, "object:bbox_out_of_image": 1,
                                       "object:duplicate_annotation_id": 1, "object:unknown_image_id": 1}
    assert not (tmp_path / "idx2" / "_spill").exists()


@pytest.mark.parametrize("raw,norm", [
    ("dining table", "dining table"), ("Sneakers", "sneakers"), ("Cabinet/shelf", "cabinet"),
    ("Moniter/TV", "monitor"), ("Ball (Object)", "ball"), ("Human  face", "human face"),
    ("traffic_light", "traffic light"), ("Other Shoes", "shoes"),
])
def test_category_normalisation(raw, norm):
    assert normalize_category(raw) == norm


def test_streamed_file_with_bare_nan_does_not_stop_the_run(tmp_path):
    body = _generated_coco(n_images=10, anns_per_image=2)
    body["annotations"][3]["bbox"] = [1.0, float("nan"), 5.0, 5.0]
    body["annotations"][7]["bbox"] = [1.0, 2.0, float("inf"), 5.0]
    f = tmp_path / "ann.json"
    f.write_text(json.dumps(body))  # bare NaN / Infinity tokens, as Python writes them
    for kw, reason in (({}, "bbox_nonfinite"), ({"in_memory_bytes": 0, "buckets": 2}, "bbox_malformed")):
        src = open_source("coco", annotations=f, images=tmp_path, **kw)
        errs = [r for r in src.iter_records() if isinstance(r, ErrorRecord)]
        st = src.stats()
        assert Counter(e.reason for e in errs) == {reason: 2, "duplicate_annotation_id": 1}
        assert st["objects_ok"] == 18 and st["accounting_ok"]


def test_streamed_and_in_memory_reads_agree_on_a_bom_and_integers_beyond_64_bits(tmp_path):
    """A UTF-8 byte order mark and an integer beyond 64 bits (an annotation id, an attribute):
    json.loads reads both, so the streamed reader (ijson, for large files) must read the same
    records, not refuse the file with "lexical error" / "integer overflow"."""
    import json

    from PIL import Image

    from lifting.sources import open_source

    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    big = 2 ** 70 + 3
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
           "categories": [{"id": 1, "name": "cup"}],
           "annotations": [{"id": big, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400,
                            "serial": big},
                           {"id": 2, "image_id": 1, "category_id": 1, "bbox": [30, 10, 20, 20], "area": 400}]}
    f = tmp_path / "ann.json"
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc).encode())

    def read(**opts):
        recs = list(open_source("coco", annotations=f, images=tmp_path, **opts).iter_records())
        return [r.to_dict() for r in recs]

    small, streamed = read(), read(in_memory_bytes=0)
    assert small == streamed
    objs = small[0]["objects"]
    assert [o["source_ann_id"] for o in objs] == [big, 2]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("where", ["annotation_string", "annotation_polygon"])
def test_one_value_larger_than_the_budget_is_one_clear_line_not_gigabytes(tmp_path, streamed, where):
    """A single annotation (one long string, or one huge polygon) beyond MAX_JSON_VALUE_BYTES
    would be built whole in memory by any JSON parser: the file is refused with one line
    before the parser reaches it, in both reading paths."""
    import json

    from lifting.sources import SourceConfigError, open_source
    from lifting.sources.json_depth import MAX_JSON_VALUE_BYTES

    n = MAX_JSON_VALUE_BYTES + 1024
    big = ('"' + "x" * n + '"') if where == "annotation_string" else ("[[" + "1," * (n // 2) + "1]]")
    key = "note" if where == "annotation_string" else "segmentation"
    head = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "categories": [{"id": 1, "name": "cup"}]}
    text = json.dumps(head)[:-1] + ', "annotations": [{"id": 1, "image_id": 1, "category_id": 1, ' \
        f'"bbox": [1, 1, 5, 5], "{key}": {big}}}]}}'
    f = tmp_path / "ann.json"
    f.write_text(text)
    opts = {"in_memory_bytes": 0} if streamed else {"in_memory_bytes": 1 << 30}
    with pytest.raises(SourceConfigError, match="larger than 32 MB"):
        list(open_source("coco", annotations=f, images=tmp_path, **opts).iter_records())

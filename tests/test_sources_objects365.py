"""Objects365 reader: COCO-format boxes, patch folders, class-name normalisation."""
import json

from lifting.records import ErrorRecord, ImageRecord
from lifting.sources import open_source
from lifting.sources.objects365 import path_candidates


def _dataset(tmp_path, layout):
    names = [f"images/v1/patch{i % 2}/objects365_v1_{i:08d}.jpg" for i in range(6)]
    for n in names:
        parts = n.split("/")
        rel = {"as_named": n, "patch": f"{parts[2]}/{parts[3]}", "flat": parts[3]}[layout]
        p = tmp_path / "root" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"jpeg")
    images = [{"id": i, "file_name": n, "width": 100, "height": 80} for i, n in enumerate(names)]
    cats = [{"id": 1, "name": "Sneakers"}, {"id": 2, "name": "Cabinet/shelf"}, {"id": 3, "name": "Moniter/TV"}]
    anns = [{"id": 100 + k, "image_id": k % 6, "category_id": 1 + k % 3, "bbox": [1, 2, 30, 40], "iscrowd": 0,
             "isfake": 0, "isreflected": k % 2, "area": 1200} for k in range(15)]
    f = tmp_path / "zhiyuan_objv2_val.json"
    f.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return f, names


def test_patch_layouts_resolve_to_existing_files(tmp_path):
    for layout in ("as_named", "patch", "flat"):
        d = tmp_path / layout
        d.mkdir()
        f, names = _dataset(d, layout)
        src = open_source("objects365", annotations=f, images=d / "root", check_files=True)
        recs = list(src.iter_records())
        assert not [r for r in recs if isinstance(r, ErrorRecord)], layout
        imgs = [r for r in recs if isinstance(r, ImageRecord)]
        assert len(imgs) == 6 and sum(len(r.objects) for r in imgs) == 15
        for r in imgs:
            assert r.image_path.endswith(names[r.image_id].split("/")[-1])
        st = src.stats()
        assert st["accounting_ok"] and st["annotations_in"] == 15


def test_names_and_flags(tmp_path):
    f, _ = _dataset(tmp_path, "patch")
    objs = [o for r in open_source("objects365", annotations=f, images=tmp_path / "root").iter_records()
            for o in r.objects]
    assert {(o.category_raw, o.category) for o in objs} == {
        ("Sneakers", "sneakers"), ("Cabinet/shelf", "cabinet"), ("Moniter/TV", "monitor")}
    assert sum(o.attributes["isreflected"] for o in objs) == 7 and all(o.segmentation is None for o in objs)
    assert all(o.object_id == f"objects365_{o.object_id.split('_')[1].split('-')[0]}-{o.source_ann_id}" for o in objs)


def test_path_candidates():
    c = path_candidates("/d", "images/v2/patch16/objects365_v2_00908726.jpg")
    assert c == ["/d/images/v2/patch16/objects365_v2_00908726.jpg", "/d/patch16/objects365_v2_00908726.jpg",
                 "/d/objects365_v2_00908726.jpg"]

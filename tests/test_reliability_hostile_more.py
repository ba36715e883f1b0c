"""Hostile inputs, round 2 (issue 19), whole-file and run-level classes: more cases of each.

`tests/test_reliability_hostile.py` holds the per-record corpus (one `lift3d lift` run, both
reader paths). Here: deep JSON nesting in every member, top-level members of every non-list
kind, a UTF-8 BOM and integers beyond 64 bits, each through `lift3d lift` with the JSON in
memory and streamed (`--plan-in-memory-mb 0`); settings out of range on the command line;
`scene_extent_over_budget` and `image_aspect_unsupported` (the two budgets the per-record run
cannot reach with sensor depth and the default LiftConfig); Unicode name collisions and
hidden files of a folder source. Each case states its exact outcome: the one error line and
exit 2 with no output created, or the reason code with the run's accounting and its good
images still lifted.
"""
from __future__ import annotations

import json
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_reliability_corpus import H, W
from test_reliability_hostile import streamed_outcome

#: How the annotation file is read. `lift3d lift` parses a file under the source's
#: in_memory_bytes (32 MB) with json.loads whatever --plan-in-memory-mb says (0 only routes the
#: plan through a Parquet index), so the streamed (ijson) reader is reached here through
#: `open_source(..., in_memory_bytes=0)`, the reader the CLI uses on large files.
MODES = ["in_memory", "index_plan", "ijson"]
PLAN = {"in_memory": [], "index_plan": ["--plan-in-memory-mb", "0"]}


def _outcome(ann, images, out, mode, capsys) -> tuple[int, str]:
    """(exit code, its one error line): `lift3d lift` in modes in_memory / index_plan, the
    streamed reader over every record in mode ijson (a SourceConfigError is exit 2)."""
    if mode != "ijson":
        rc = _lift(ann, images, out, *PLAN[mode])
        return rc, (_refused(capsys, out) if rc else "")
    return streamed_outcome(ann, images)


def _read(ann, images, in_memory_bytes):
    """What the reader gives: (keys with their objects' source ids, error reasons), stats."""
    from lifting.sources import open_source

    src = open_source("omni3d", annotations=ann, images=images, in_memory_bytes=in_memory_bytes)
    recs = list(src.iter_records())
    got = (sorted((r.key, sorted(str(o.source_ann_id) for o in r.objects)) for r in recs if hasattr(r, "objects")),
           sorted((r.key, r.reason) for r in recs if not hasattr(r, "objects")))
    return got, src.stats()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from lifting.synthetic import SceneConfig, write_dataset

    d = tmp_path_factory.mktemp("scenes_more")
    ann = write_dataset(d, n_scenes=3, seed=5, config=SceneConfig(width=W, height=H))
    return ann, d / "images"


def _lift(ann, images, out, *more) -> int:
    from pipelines import cli

    return cli.main(["lift", "--source", "omni3d", "--annotations", str(ann), "--images", str(images), "--out",
                     str(out), "--depth-model", "sensor", "--workers", "1", "--no-progress",
                     "--samples-per-shard", "2", *more])


def _refused(capsys, out: Path) -> str:
    """The one `lift3d lift: error:` line of a refused run; nothing was left in `out`."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lift3d lift: error:"), err
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    assert not [p for p in left if "stats.json" in p or p.endswith(".tar")], left
    return err[0]


def _stats(out: Path) -> dict:
    return json.loads((out / "repository" / "stats.json").read_text())


def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


# -- deep nesting in every member, both reader paths -------------------------------------------

#: where -> (how many levels the document itself opens around the value, JSON text builder)
def _deep_doc(doc: dict, where: str, deep: str) -> str:
    doc = json.loads(json.dumps(doc))
    if where == "image":
        doc["images"][0]["extra"] = "DEEP"
    elif where == "category":
        doc["categories"][0]["extra"] = "DEEP"
    elif where == "segmentation":
        doc["annotations"][0]["segmentation"] = "DEEP"
    elif where == "bbox":
        doc["annotations"][0]["bbox"] = "DEEP"
    elif where == "info":
        doc["info"] = {"x": [{"y": "DEEP"}]}
    return json.dumps(doc).replace('"DEEP"', deep)


@pytest.mark.parametrize("where", ["image", "category", "segmentation", "bbox", "info"])
@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("mode", MODES)
def test_deep_nesting_in_any_member_is_one_line(scenes, tmp_path, capsys, where, kind, mode):
    ann, images = scenes
    p = tmp_path / "a.json"
    p.write_text(_deep_doc(json.loads(Path(ann).read_text()), where, _nested(50_000, kind)))
    rc, line = _outcome(p, images, tmp_path / "out", mode, capsys)
    assert rc == 2 and "nesting deeper than 64 levels" in line and "no COCO-format file nests that deep" in line, line


@pytest.mark.parametrize("extra, ok", [(63, True), (64, False), (65, False)])
@pytest.mark.parametrize("mode", MODES)
def test_nesting_limit_is_exact(scenes, tmp_path, capsys, extra, ok, mode):
    """The document is level 1: a top-level member nesting 63 more is 64 levels (accepted),
    64 more is 65 (refused) - on both paths alike."""
    ann, images = scenes
    p = tmp_path / "a.json"
    p.write_text(json.dumps(json.loads(Path(ann).read_text()))[:-1] + ', "extra": ' + _nested(extra, "list") + "}")
    out = tmp_path / "out"
    rc, line = _outcome(p, images, out, mode, capsys)
    if ok:
        assert rc == 0 and (mode == "ijson" or (_stats(out)["images"]["in"] == 3 and _stats(out)["balanced"]))
    else:
        assert rc == 2 and "nesting deeper than 64 levels" in line


# -- top-level members of every non-list kind ---------------------------------------------------

KINDS = {"string": "a list of them", "number": 3, "null": None, "true": True, "empty_object": {}}


@pytest.mark.parametrize("member", ["annotations", "images", "categories"])
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("mode", MODES)
def test_top_level_member_of_any_other_kind_is_refused(scenes, tmp_path, capsys, member, kind, mode):
    ann, images = scenes
    doc = json.loads(Path(ann).read_text())
    doc[member] = KINDS[kind]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    rc, line = _outcome(p, images, tmp_path / "out", mode, capsys)
    assert rc == 2 and f"'{member}' is " in line and "not a list" in line, line


# -- a UTF-8 BOM and integers beyond 64 bits: one reader, one behaviour --------------------------

def _bom_bigint(doc: dict, how: str) -> bytes:
    doc = json.loads(json.dumps(doc))
    if how in ("bigint_id", "bom_bigint"):
        doc["annotations"][0]["id"] = 2 ** 64 + 7
    if how == "bigint_passthrough":
        doc["images"][0]["big"] = -(10 ** 40)
        doc["annotations"][1]["big"] = 10 ** 40
    if how == "bigint_category_id":
        old = doc["categories"][0]["id"]
        doc["categories"][0]["id"] = 2 ** 80
        for a in doc["annotations"]:
            if a["category_id"] == old:
                a["category_id"] = 2 ** 80
    text = json.dumps(doc).encode()
    return (b"\xef\xbb\xbf" + text) if how.startswith("bom") else text


@pytest.mark.parametrize("how", ["bom", "bigint_id", "bigint_passthrough", "bigint_category_id", "bom_bigint"])
def test_bom_and_big_integers_read_alike_on_both_paths(scenes, tmp_path, how):
    ann, images = scenes
    doc = json.loads(Path(ann).read_text())
    p = tmp_path / "a.json"
    p.write_bytes(_bom_bigint(doc, how))
    ref = tmp_path / "ref"
    ref_ann = tmp_path / "ref.json"
    ref_ann.write_text(json.dumps(doc))
    assert _lift(ref_ann, images, ref) == 0
    # the two readers give the same records and errors, and count the same
    (got_mem, st_mem), (got_ijson, st_ijson) = (_read(p, images, b) for b in (1 << 30, 0))
    assert got_mem == got_ijson and st_mem == st_ijson and st_mem["accounting_ok"]
    assert st_mem["annotations_in"] == len(doc["annotations"])
    results = {}
    for streamed in (False, True):
        out = tmp_path / f"out{int(streamed)}"
        assert _lift(p, images, out, *PLAN["index_plan" if streamed else "in_memory"]) == 0
        st = _stats(out)
        assert st["balanced"] and st["objects_accounting"]["in"] == len(doc["annotations"])
        results[streamed] = ({k: st[k] for k in ("images", "objects", "objects_accounting")},
                             sorted(r["key"] for r in _index_rows(out)),
                             sorted(str(r["source_ann_id"]) for r in _index_rows(out)))
    assert results[False] == results[True]
    st = _stats(ref)
    assert results[False][0]["images"] == st["images"] and results[False][0]["objects"] == st["objects"]
    if how in ("bigint_id", "bom_bigint"):
        assert str(2 ** 64 + 7) in results[False][2]


def _index_rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "repository" / "index" / "objects.parquet").to_pylist()


# -- settings out of range: one line, exit 2, nothing created -----------------------------------

SETTINGS = {
    "limit_zero": ["--limit", "0"],
    "limit_negative": ["--limit", "-1"],
    "max_pixels_zero": ["--max-pixels", "0"],
    "max_pixels_negative": ["--max-pixels", "-1"],
    "depth_input_size_zero": ["--depth-input-size", "0"],
    "depth_input_size_13": ["--depth-input-size", "13"],
    "direct_num_workers_negative": ["--direct_num_workers", "-1"],
    "direct_num_workers_negative_eq": ["--direct_num_workers=-3"],
    "device_cuda_without_gpu": ["--device", "cuda", "--depth-model", "depth-anything-v2"],
    "device_cuda_99": ["--device", "cuda:99", "--depth-model", "depth-anything-v2"],
    "device_unknown": ["--device", "tpu"],
    "workers_zero": ["--workers", "0"],
    "batch_size_zero": ["--batch-size", "0"],
    "samples_per_shard_zero": ["--samples-per-shard", "0"],
    "plan_in_memory_negative": ["--plan-in-memory-mb", "-1"],
    "shard_target_mb_zero": ["--shard-target-mb", "0"],
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_settings_out_of_range_are_one_line_before_any_output(scenes, tmp_path, capsys, name, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    ann, images = scenes
    out = tmp_path / "out"
    assert _lift(ann, images, out, *SETTINGS[name]) == 2
    line = _refused(capsys, out)
    flag = SETTINGS[name][0].split("=")[0]
    assert flag in line, line
    assert not out.exists(), sorted(out.rglob("*"))


# -- scene_extent_over_budget: a K that passes the FOV check, points beyond the budget -----------

@pytest.mark.parametrize("fx, depth_m, budget, expect", [
    (4.0, 90.0, 1000.0, "scene_extent_over_budget"),  # slope 20 x 90 m = 1.8 km
    (148.0, 90.0, 50.0, "scene_extent_over_budget"),  # a plain K, the budget below the depth itself
    (4.0, 90.0, 2000.0, None),  # 1.8 km within 2 km: lifted (or rejected), not refused
])
def test_scene_extent_budget_is_checked_before_any_object(fx, depth_m, budget, expect):
    from lifting.camera import MAX_RAY_SLOPE, validate_K
    from lifting.lift.config import LiftConfig
    from lifting.lift.core import LiftInputError, lift_image
    from lifting.records import ImageRecord, Object2D

    K = np.array([[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1.0]])
    assert validate_K(K, W, H) is None and (W / 2) / fx < MAX_RAY_SLOPE  # passes the FOV check
    depth = np.full((H, W), depth_m, np.float32)
    rec = ImageRecord(key="k", source="t", image_id=1, image_path="x.jpg", width=W, height=H,
                      objects=[Object2D(object_id="k-1", category="chair", bbox_xyxy=[10.0, 10.0, 60.0, 60.0])])
    cfg = LiftConfig(max_scene_extent_m=budget)
    if expect is None:
        out = lift_image(rec, depth, K, K_source="dataset", depth_source="sensor", config=cfg)
        assert len(out["objects"]) == 1
        return
    with pytest.raises(LiftInputError) as e:
        lift_image(rec, depth, K, K_source="dataset", depth_source="sensor", config=cfg)
    assert e.value.reason == expect and "max_scene_extent_m" in str(e.value)


def test_scene_extent_over_budget_through_the_cli(tmp_path):
    """With the default budget (5 km) and a raised max_depth_m (`--config` lift section): an
    image whose depth reaches 6 km, and one with a steep but accepted K at 300 m (x 20 = 6 km),
    fail alone with `scene_extent_over_budget`; the accounting holds; the good image is lifted."""
    import shutil

    from lifting.synthetic import SceneConfig, write_dataset

    d = tmp_path / "data"
    ann = write_dataset(d, n_scenes=1, seed=5, config=SceneConfig(width=W, height=H))
    doc = json.loads(ann.read_text())
    img0 = doc["images"][0]
    anns0 = [a for a in doc["annotations"] if a["image_id"] == img0["id"]]
    for i, (scale, depth_value, fx) in enumerate([(1.0, 6000, None), (1.0, 300, 4.0)], 1):
        img = json.loads(json.dumps(img0))
        img["id"] = 1000 + i
        img["file_name"] = f"far{i}.jpg"
        shutil.copy(d / "images" / img0["file_name"], d / "images" / img["file_name"])
        img["depth_file"] = f"far{i}.png"
        Image.fromarray(np.full((H, W), depth_value, np.uint16)).save(d / "images" / img["depth_file"])
        img["depth_scale"] = scale
        if fx:
            img["K"][0][0] = img["K"][1][1] = fx
        doc["images"].append(img)
        for j, a in enumerate(anns0):
            doc["annotations"].append({**a, "id": 100_000 + 10 * i + j, "image_id": img["id"]})
    ann.write_text(json.dumps(doc))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lift:\n  max_depth_m: 100000.0\n")
    out = tmp_path / "out"
    assert _lift(ann, d / "images", out, "--config", str(cfg)) == 0
    st = _stats(out)
    assert st["images_failed_by_reason"] == {"scene_extent_over_budget": 2}
    assert st["images"]["in"] == 3 and st["images"]["lifted"] == 1 and st["balanced"]
    acc = st["objects_accounting"]
    assert acc["balanced"] and acc["in"] == len(doc["annotations"]) and acc["of_failed_images"] == 2 * len(anns0)
    errs = [json.loads(x) for x in (out / "repository" / "errors" / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["key"] for e in errs if e["level"] == "image") == ["omni3d_1001", "omni3d_1002"]


# -- image_aspect_unsupported: the depth model's canvas planned from the header -------------------

@pytest.mark.parametrize("w, h, size, bad", [
    (600, 2, 518, True), (2, 600, 518, True), (1000, 50, 56, True), (50, 1000, 56, True),
    (16_000, 1_000, 518, True), (640, 480, 518, False), (400, 56, 56, False), (160, 120, 56, False),
])
def test_depth_input_problem_budget(w, h, size, bad):
    from pipelines.transforms import MAX_CANVAS_AREA, depth_input_problem

    why = depth_input_problem("depth-anything-v2", {"input_size": size}, w, h)
    assert (why is not None) == bad, why
    if bad:
        assert "aspect ratio too extreme" in why and f"{MAX_CANVAS_AREA} x {size}^2" in why
    assert depth_input_problem("depth-pro", {"input_size": size}, w, h) is None  # one square whatever the size


@pytest.fixture(scope="module")
def depth_ckpt(tmp_path_factory):
    from lifting.models.depth import tiny_random_checkpoint

    return tiny_random_checkpoint("depth-anything-v2", tmp_path_factory.mktemp("da_tiny_hostile"))


def test_image_aspect_unsupported_through_the_depth_model(depth_ckpt, tmp_path):
    """600x2 and 2x600 images (a 56 x 16,800 canvas at input size 56) fail alone as
    `image_aspect_unsupported` without being decoded (their files are not even valid JPEGs
    beyond the header); the normal images of the same run go through the tiny Depth Anything."""
    import shutil

    from lifting.synthetic import SceneConfig, write_dataset

    d = tmp_path / "data"
    ann = write_dataset(d, n_scenes=2, seed=5, config=SceneConfig(width=W, height=H))
    doc = json.loads(ann.read_text())
    for i, (w, h) in enumerate([(600, 2), (2, 600)], 1):
        name = f"thin{i}.jpg"
        Image.new("RGB", (w, h), (90, 90, 90)).save(d / "images" / name)
        doc["images"].append({"id": 500 + i, "file_name": name, "width": w, "height": h})
        doc["annotations"].append({"id": 9000 + i, "image_id": 500 + i, "category_id": doc["categories"][0]["id"],
                                   "bbox": [0, 0, 2, 2], "iscrowd": 0})
    for img in doc["images"]:  # the model's depth, not the sensor's
        img.pop("depth_file", None)
    ann.write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert _lift(ann, d / "images", out, "--depth-model", "depth-anything-v2", "--depth-weights", str(depth_ckpt),
                 "--depth-input-size", "56", "--batch-size", "2") == 0
    st = _stats(out)
    assert st["images_failed_by_reason"] == {"image_aspect_unsupported": 2}
    assert st["images"]["in"] == 4 and st["images"]["lifted"] + st["images"]["rejected"] == 2 and st["balanced"]
    assert st["objects_accounting"]["balanced"] and st["objects_accounting"]["in"] == len(doc["annotations"])
    errs = [json.loads(x) for x in (out / "repository" / "errors" / "errors.jsonl").read_text().splitlines()]
    got = {e["key"]: (e["reason"], e["stage"]) for e in errs if e["level"] == "image"}
    assert got == {"omni3d_501": ("image_aspect_unsupported", "depth"), "omni3d_502": ("image_aspect_unsupported", "depth")}
    shutil.rmtree(d)


# -- Unicode names and hidden files of a folder source -----------------------------------------

NAME_SETS = {
    "cjk": ["猫.jpg", "犬.jpg", "鳥.jpg"],
    "nfc_nfd": [unicodedata.normalize("NFC", "café.jpg"), unicodedata.normalize("NFD", "café.jpg")],
    "emoji": ["😀.jpg", "😃.jpg", "👍🏽.jpg", "👍🏿.jpg"],
    "case_only": ["Photo.jpg", "photo.jpg", "PHOTO.jpg", "photo.JPG"],
    "punctuation_only": ["a-b.jpg", "a_b.jpg", "a b.jpg", "a.b.jpg", "a+b.jpg", "a(b).jpg"],
    "folder_vs_dash": ["a/b.jpg", "a-b.jpg", "a_b.jpg"],
    "fullwidth_vs_ascii": ["ａ.jpg", "a.jpg"],
}


@pytest.mark.parametrize("which", list(NAME_SETS))
def test_unicode_name_collisions_get_distinct_stable_keys(tmp_path, which):
    import re

    from lifting.records import make_key
    from lifting.sources import open_source

    names = NAME_SETS[which]
    root = tmp_path / "photos"
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6)).save(root / n, format="JPEG")
    recs = list(open_source("images", images=root).iter_records())
    assert not [r for r in recs if not hasattr(r, "objects")], [r.reason for r in recs if not hasattr(r, "objects")]
    keys = [r.key for r in recs]
    assert sorted(r.image_id for r in recs) == sorted(names)
    assert len(set(keys)) == len(names) and all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)
    assert {r.image_id: r.key for r in recs} == {n: make_key("images", n) for n in names}  # stable
    assert len({k.lower() for k in keys}) == len(names)  # distinct on a case-insensitive disk too


@pytest.mark.parametrize("hidden", [[".a.jpg"], ["._mac.jpg", ".DS_Store.png"], ["sub/.x.jpg", "sub/deeper/.y.png"],
                                    [".猫.jpg", ". .jpg"]])
def test_hidden_files_are_counted(tmp_path, hidden):
    from lifting.sources import open_source

    root = tmp_path / "photos"
    visible = ["v1.jpg", "sub/v2.jpg"]
    for n in visible + hidden:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6)).save(root / n, format="JPEG")
    (root / ".notes.txt").write_text("not an image")  # not image-like: not counted
    src = open_source("images", images=root)
    recs = list(src.iter_records())
    assert sorted(r.image_id for r in recs if hasattr(r, "objects")) == sorted(visible)
    assert Counter(r.reason for r in recs if not hasattr(r, "objects")) == {"image_hidden": len(hidden)}
    st = src.stats()
    assert st["images_in"] == len(visible) + len(hidden) and st["accounting_ok"]


# -- a top-level member given twice: both readers read both lists (json.loads alone kept the last) --

@pytest.mark.parametrize("member", ["annotations", "images"])
@pytest.mark.parametrize("mode", MODES)
def test_a_repeated_top_level_member_loses_nothing_silently(scenes, tmp_path, capsys, member, mode):
    ann, images = scenes
    doc = json.loads(Path(ann).read_text())
    items = doc.pop(member)
    half = len(items) // 2
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc)[:-1] + f', "{member}": ' + json.dumps(items[:half])
                 + f', "{member}": ' + json.dumps(items[half:]) + "}")
    out = tmp_path / "out"
    n_img = len(doc["images"] if member == "annotations" else items)
    n_ann = len(items) if member == "annotations" else len(doc["annotations"])
    if mode == "ijson":
        _, st = _read(p, images, 0)
        assert st["images_in"] == n_img and st["annotations_in"] == n_ann and st["accounting_ok"]
        return
    rc, _ = _outcome(p, images, out, mode, capsys)
    if rc == 2:  # refusing the file is as good as reading all of it
        return
    st = _stats(out)
    assert rc == 0 and st["images"]["in"] == n_img
    assert st["objects_accounting"]["in"] == n_ann and st["balanced"]

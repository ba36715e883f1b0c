"""The lift pipeline with real model stages: Depth Anything V2 through RunInference on real COCO
images, SAM on box-only objects (and its fallback), decode failures, depth batches by canvas.

Models are tiny random-initialised checkpoints of the real architectures: their depth is
garbage, so what is tested is the wiring, the accounting and the formats, not accuracy.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pipelines import cli

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO = DATA / "coco-mini"
COCO_ANN = COCO / "annotations" / "instances_val2017.json"


@pytest.fixture(scope="module")
def depth_ckpt(tmp_path_factory):
    from lifting.models.depth import tiny_random_checkpoint

    return tiny_random_checkpoint("depth-anything-v2", tmp_path_factory.mktemp("da_tiny"))


@pytest.fixture(scope="module")
def box_only_scenes(tmp_path_factory):
    """Three synthetic RGB-D scenes whose objects have boxes but no masks."""
    from lifting.synthetic import SceneConfig, write_dataset

    ann = write_dataset(tmp_path_factory.mktemp("boxonly"), n_scenes=3, seed=5, config=SceneConfig(width=160, height=120))
    d = json.loads(ann.read_text())
    for a in d["annotations"]:
        a.pop("segmentation", None)
    ann.write_text(json.dumps(d))
    return ann


def _stats(out: Path, part: str = "repository") -> dict:
    return json.loads((out / part / "stats.json").read_text())


def _samples(out: Path, part: str) -> list[dict]:
    import webdataset as wds

    man = json.loads((out / part / "manifest.json").read_text())
    shards = [str(out / part / s["name"]) for s in man["shards"]]
    samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False))
    assert len(samples) == man["totals"]["samples"]
    return samples


def test_run_on_coco_mini_with_tiny_depth_anything(depth_ckpt, tmp_path):
    if not COCO_ANN.is_file():
        pytest.skip(f"real sample data not found at {COCO} (see ../shared/data/README.md)")
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    rc = cli.main(["run", "--source", "coco", "--annotations", str(COCO_ANN), "--images", str(COCO / "val2017"),
                   "--out", str(out), "--depth-model", "depth-anything-v2", "--depth-weights", str(depth_ckpt),
                   "--depth-input-size", "112", "--batch-size", "4", "--samples-per-shard", "40",
                   "--workers", "1", "--no-progress"])
    assert rc == 0
    gt = json.loads(COCO_ANN.read_text())
    st = _stats(out)
    im, ob = st["images"], st["objects"]
    assert im["in"] == len(gt["images"]) == 79
    assert im["in"] == im["lifted"] + im["rejected"] + im["failed"] and st["balanced"]
    assert ob["total"] + sum(st["objects_dropped_at_read_by_reason"].values()) == len(gt["annotations"]) == 624
    assert ob["total"] == ob["kept"] + ob["rejected"] == sum(st["objects_rejected_by_reason"].values()) + ob["kept"]
    assert st["models"]["depth"] == "depth-anything-v2" and st["models"]["depth_weights"] == str(depth_ckpt)
    # the shards read back with webdataset; counts match stats.json and the manifest
    samples = _samples(out, "repository")
    assert len(samples) == st["samples"] == im["lifted"]
    for s in samples:
        rec = json.loads(s["json"])
        assert rec["key"] == s["__key__"] and s["jpg"][:2] == b"\xff\xd8"
        assert rec["depth_source"] == "model:depth-anything-v2" and rec["K_source"] in ("fov_prior", "exif")
        assert rec["status"] == "lifted" and any(o["status"] == "kept" for o in rec["objects"])
    # every input image is in exactly one of: a shard, the rejected list, the errors
    keys = {f"coco_{i['id']}" for i in gt["images"]}
    shard_keys = {s["__key__"] for s in samples}
    rejected = [json.loads(x) for x in (out / "repository" / "rejected" / "rejected.jsonl").read_text().splitlines()]
    errors = [json.loads(x) for x in (out / "repository" / "errors" / "errors.jsonl").read_text().splitlines()]
    rej_keys = {r["key"] for r in rejected if r["level"] == "image"}
    err_keys = {e["key"] for e in errors if e["level"] == "image"}
    assert shard_keys | rej_keys | err_keys == keys
    assert len(shard_keys) + len(rej_keys) + len(err_keys) == 79
    idx = pq.read_table(out / "repository" / "index" / "objects.parquet").to_pylist()
    assert len(idx) == ob["total"] and sum(r["status"] == "kept" for r in idx) == ob["kept"]
    # QA over the lifted images, readable too
    qst = _stats(out, "qa")
    qa = _samples(out, "qa")
    assert qst["records_in"] == im["lifted"] and len(qa) == qst["samples"]
    assert {s["__key__"] for s in qa} <= shard_keys


def test_decode_failure_goes_to_errors_and_sam_fallback_is_flagged_once(depth_ckpt, box_only_scenes, tmp_path,
                                                                        monkeypatch, caplog):
    """A corrupt image fails with its reader reason; SAM without weights falls back (one log line)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(box_only_scenes.parent, data)
    first = sorted((data / "images").glob("*.jpg"))[0]
    first.write_bytes(b"\xff\xd8 not a jpeg at all")
    empty = tmp_path / "no_models"
    empty.mkdir()
    monkeypatch.setenv("LIFT3D_MODELS_DIR", str(empty))
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        rc = cli.main(["lift", "--source", "omni3d", "--annotations", str(data / "annotations.json"),
                       "--images", str(data / "images"), "--out", str(out), "--depth-model", "depth-anything-v2",
                       "--depth-weights", str(depth_ckpt), "--depth-input-size", "56", "--segmenter", "sam",
                       "--workers", "1", "--no-progress"])
    assert rc == 0
    st = _stats(out)
    assert st["images"] == {"in": 3, "lifted": st["images"]["lifted"], "rejected": st["images"]["rejected"],
                            "failed": 1}
    assert list(st["images_failed_by_reason"]) == ["image_unreadable"]
    err = [json.loads(x) for x in (out / "repository" / "errors" / "errors.jsonl").read_text().splitlines()]
    assert [(e["reason"], e["stage"]) for e in err] == [("image_unreadable", "decode")]
    assert st["models"]["segmenter"] == "sam" and st["models"]["segmenter_used"] == "depth_box"
    assert "weights not found" in st["models"]["segmenter_fallback"]
    man = json.loads((out / "repository" / "manifest.json").read_text())
    assert man["config"]["models"]["segmenter_used"] == "depth_box"
    fallback_lines = [r for r in caplog.records if "falling back to depth-only box segmentation" in r.getMessage()]
    assert len(fallback_lines) == 1


def test_sam_masks_reach_the_lifting_core(box_only_scenes, tmp_path):
    """--segmenter sam with a (tiny) SAM checkpoint: box-only objects are lifted from SAM's masks;
    --segmenter none ignores dataset masks; annotation masks are used by default."""
    from lifting.models.segment import tiny_random_checkpoint as tiny_sam

    sam = tiny_sam(tmp_path / "sam")
    base = ["--source", "omni3d", "--annotations", str(box_only_scenes), "--images",
            str(box_only_scenes.parent / "images"), "--depth-model", "sensor", "--workers", "1", "--no-progress"]
    assert cli.main(["lift", *base, "--out", str(tmp_path / "sam_out"), "--segmenter", "sam",
                     "--segmenter-model", str(sam)]) == 0
    st = _stats(tmp_path / "sam_out")
    assert st["models"]["segmenter_used"] == "sam" and st["models"]["segmenter_fallback"] is None
    n_obj = len(json.loads(box_only_scenes.read_text())["annotations"])
    assert st["objects"]["total"] == n_obj and st["images"]["in"] == 3
    from lifting.repository import iter_repository
    import pyarrow.parquet as pq

    recs = [r for r, _ in iter_repository(tmp_path / "sam_out" / "repository")]
    assert recs, "no image lifted: cannot check where the masks came from"
    # every object reached the lifting core with SAM's mask (box-only scenes: no other mask exists)
    assert {o["mask_source"] for r in recs for o in r["objects"]} == {"segmenter"}
    rows = pq.read_table(tmp_path / "sam_out" / "repository" / "index" / "objects.parquet").to_pylist()
    assert len(rows) == n_obj
    # --segmenter none on scenes WITH masks: the dataset's masks are ignored
    from lifting.synthetic import SceneConfig, write_dataset

    ann = write_dataset(tmp_path / "masked", n_scenes=2, seed=5, config=SceneConfig(width=160, height=120))
    argv = ["--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
            "--depth-model", "sensor", "--workers", "1", "--no-progress"]
    assert cli.main(["lift", *argv, "--out", str(tmp_path / "none"), "--segmenter", "none"]) == 0
    assert cli.main(["lift", *argv, "--out", str(tmp_path / "ann")]) == 0
    none_src = {o["mask_source"] for r, _ in iter_repository(tmp_path / "none" / "repository") for o in r["objects"]}
    ann_src = {o["mask_source"] for r, _ in iter_repository(tmp_path / "ann" / "repository") for o in r["objects"]}
    assert none_src <= {"depth_frustum", None} and "annotation" in ann_src and "depth_frustum" not in ann_src


def test_depth_batches_share_a_canvas_and_cover_each_record_once():
    from lifting.models.depth import plan_letterbox
    from pipelines.lift_pipeline import Unit
    from pipelines.transforms import ReadUnitBatchesFn

    sizes = [(640, 480), (480, 640), (640, 427), (640, 480), (500, 375), (640, 480), (640, 480), (480, 640),
             (640, 480), (612, 612)]
    recs = tuple({"key": f"k{i:02d}", "image_path": "/nope.jpg", "width": w, "height": h}
                 for i, (w, h) in enumerate(sizes))
    batches = list(ReadUnitBatchesFn("depth-anything-v2", {"input_size": 518}, 3).process(Unit(7, len(recs), recs)))
    seen = [it["record"]["key"] for b in batches for it in b]
    assert sorted(seen) == [r["key"] for r in recs] and len(set(seen)) == len(seen)
    def canvas(it):
        return plan_letterbox(it["record"]["height"], it["record"]["width"], 518, "short_side", 14, 56).canvas

    by_canvas: dict = {}
    for b in batches:
        assert 1 <= len(b) <= 3 and all(it["unit"] == 7 for it in b)
        assert len({canvas(it) for it in b}) == 1
        by_canvas.setdefault(canvas(b[0]), []).append(len(b))
    # batches are full except at most one per canvas: as few forward passes as possible
    n_per_canvas: dict = {}
    for r in recs:
        c = canvas({"record": r})
        n_per_canvas[c] = n_per_canvas.get(c, 0) + 1
    assert by_canvas.keys() == n_per_canvas.keys() and len(n_per_canvas) >= 3  # 4:3 sizes share a canvas
    for c, n in n_per_canvas.items():
        assert sorted(by_canvas[c], reverse=True) == [3] * (n // 3) + ([n % 3] if n % 3 else [])

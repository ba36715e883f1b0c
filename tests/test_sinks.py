"""Shard writing, parts, finalize and the repository reader: determinism, atomicity, accounting."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from lifting.repository import RepositoryError, iter_repository, iter_shard_samples
from pipelines import sinks
from pipelines.sinks import ImageResult


def _record(key, n_kept=1, n_rej=1):
    objs = []
    for j in range(n_kept):
        objs.append({"object_id": f"{key}-{j}", "category": "box", "bbox_xyxy": [1, 2, 30, 40], "status": "kept",
                     "reason": None, "box3d": {"center_cam": [0.1, 0.2, 2.0], "dimensions": [0.5, 0.4, 0.3],
                                               "R_cam": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "yaw": 0.0}})
    for j in range(n_rej):
        objs.append({"object_id": f"{key}-r{j}", "category": "ball", "bbox_xyxy": [5, 5, 9, 9], "status": "rejected",
                     "reason": "too_few_points", "box3d": None})
    return {"schema_version": 1, "key": key, "source": "t", "image_id": key, "width": 64, "height": 48,
            "K": [[50, 0, 32], [0, 50, 24], [0, 0, 1]], "K_source": "dataset", "depth_source": "sensor",
            "gravity_cam": [0, 1, 0], "gravity_source": "dataset", "status": "lifted" if n_kept else "rejected",
            "reason": None if n_kept else "no_object_kept", "objects": objs}


def _jpg(_r):
    return b"\xff\xd8fakejpeg\xff\xd9", ""


def _results():
    return [ImageResult("b", "lifted", record=_record("b", 2, 1)),
            ImageResult("a", "lifted", record=_record("a", 1, 0)),
            ImageResult("c", "rejected", record=_record("c", 0, 2)),
            ImageResult("d", "failed", error={"reason": "depth_missing", "detail": "x", "stage": "depth"}),
            ImageResult("e", "lifted", record={**_record("e"), "K_source": 5})]  # schema-invalid


def test_tar_is_reproducible_sorted_with_fixed_metadata(tmp_path):
    samples = [{"__key__": "k2", "json": b"{}", "jpg": b"2"}, {"__key__": "k1", "json": b"{}", "jpg": b"1"}]
    a = sinks.write_tar_atomic(tmp_path / "a" / "shard-000000.tar", samples)
    b = sinks.write_tar_atomic(tmp_path / "b" / "shard-000000.tar", list(reversed(samples)))
    assert a == b and a.samples == 2
    assert (tmp_path / "a" / "shard-000000.tar").read_bytes() == (tmp_path / "b" / "shard-000000.tar").read_bytes()
    with tarfile.open(tmp_path / "a" / "shard-000000.tar") as t:
        ms = t.getmembers()
    assert [m.name for m in ms] == ["k1.jpg", "k1.json", "k2.jpg", "k2.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in ms} == {(0, 0, 0, "lift3d", "lift3d")}
    assert a.sha256 == sinks.sha256_file(tmp_path / "a" / "shard-000000.tar")


def test_failed_write_leaves_no_file_under_final_name(tmp_path):
    def gen():
        yield {"__key__": "ok", "jpg": b"1"}
        yield {"__key__": "bad", "jpg": 123}  # TarWriter refuses non-bytes mid-write
    with pytest.raises(ValueError):
        sinks.write_tar_atomic(tmp_path / "shard-000000.tar", gen())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        sinks.write_tar_atomic(tmp_path / "shard-000001.tar", [{"__key__": "a.b", "jpg": b"1"}])


def test_unit_accounting_and_finalize(tmp_path):
    root = tmp_path / "repository"
    sinks.prepare_output(root, {"config": {"x": 1}})
    st = sinks.write_repository_unit(root, 0, _results(), _jpg)
    assert st["images"] == {"in": 5, "lifted": 2, "rejected": 1, "failed": 2}
    assert st["images_failed_by_reason"] == {"depth_missing": 1, "record_invalid": 1}
    assert st["objects"] == {"total": 6, "kept": 3, "rejected": 3}
    assert sinks.done_units(root) == {0}
    src_err = [{"source": "t", "reason": "image_missing", "level": "image", "image_id": 9},
               {"source": "t", "reason": "bbox_out_of_image", "level": "object", "image_id": 1}]
    stats = sinks.finalize_repository(root, config={"x": 1}, versions={"lift3d": "0"}, expected_units=[0],
                                      source_errors=src_err)
    im = stats["images"]
    assert im["in"] == 6 and im["in"] == im["lifted"] + im["rejected"] + im["failed"] and stats["balanced"]
    assert stats["objects_rejected_by_reason"] == {"too_few_points": 3}
    assert stats["objects_dropped_at_read_by_reason"] == {"bbox_out_of_image": 1}
    man = json.loads((root / "manifest.json").read_text())
    assert man["totals"]["samples"] == 2 == stats["samples"]
    assert man["shards"][0]["sha256"] == sinks.sha256_file(root / "shard-000000.tar")
    import pyarrow.parquet as pq
    idx = pq.read_table(root / "index" / "objects.parquet").to_pylist()
    assert len(idx) == 6 and {r["key"] for r in idx} == {"a", "b", "c"}
    assert [r["shard"] for r in idx if r["key"] == "c"] == [None, None]  # rejected image: not in a shard
    errors = [json.loads(x) for x in (root / "errors" / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["reason"] for e in errors) == ["bbox_out_of_image", "depth_missing", "image_missing",
                                                   "record_invalid"]
    rejected = (root / "rejected" / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 3 + 1  # three objects, one whole image
    recs = list(iter_repository(root))
    assert [r["key"] for r, _ in recs] == ["a", "b"] and recs[0][1] == _jpg(None)[0]
    with pytest.raises(RuntimeError):
        sinks.finalize_repository(root, config={}, versions={"lift3d": "0"}, expected_units=[0, 1])


def test_output_conflict_and_temporaries(tmp_path):
    root = tmp_path / "r"
    sinks.prepare_output(root, {"config": {"a": 1}})
    sinks.write_repository_unit(root, 3, _results()[:1], _jpg)
    (root / "shard-000004.tar.tmp-deadbeef").write_bytes(b"half")
    sinks.prepare_output(root, {"config": {"a": 1}})  # same identity: resume, temporaries removed
    assert sinks.done_units(root) == {3} and not list(root.glob("*.tmp-*"))
    with pytest.raises(sinks.OutputConflict, match="config"):
        sinks.prepare_output(root, {"config": {"a": 2}})
    sinks.prepare_output(root, {"config": {"a": 2}}, overwrite=True)
    assert sinks.done_units(root) == set()


def test_reader_rejects_unsafe_members(tmp_path):
    for i, name in enumerate(["../evil.json", "/abs.json"]):
        p = tmp_path / f"shard-00000{i}.tar"
        with tarfile.open(p, "w") as t:
            ti = tarfile.TarInfo(name)
            ti.size = 2
            t.addfile(ti, io.BytesIO(b"{}"))
        with pytest.raises(RepositoryError) as e:
            list(iter_shard_samples(p))
        assert e.value.reason == "unsafe_member_path"


def test_fast_record_validation_agrees_with_jsonschema():
    from lifting.resources import validation_error

    good = _record("a", 2, 1)
    bad = [{**good, "K_source": 5}, {**good, "status": "maybe"}, {k: v for k, v in good.items() if k != "objects"},
           {**good, "objects": [{**good["objects"][0], "status": "weird"}]}, {**good, "key": "a.b"}]
    assert sinks.record_error(good, "image_record") is None is validation_error(good, "image_record")
    for b in bad:
        msg = sinks.record_error(b, "image_record")
        assert msg is not None and msg == validation_error(b, "image_record")
    assert sinks._fast_validator("image_record") is not None  # the schemas stay draft-07 compatible
    assert not sinks._draft7_compatible({"type": "array", "prefixItems": [{"type": "string"}]})
    assert not sinks._draft7_compatible({"$ref": "#/$defs/x", "minimum": 0})
    assert sinks._draft7_compatible({"properties": {"minimum": {"type": "number"}}, "items": {"$ref": "#/$defs/x"}})

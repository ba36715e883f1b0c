"""Tiny lift3d output folders written in the documented layout, for the eval/viz/stats tests.

Imported by tests/test_eval*.py, test_viz*.py and test_stats*.py; its own tests check that
what it writes matches the schemas and reads back unchanged.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from lifting.boxes import Box3D, project_box
from lifting.camera import make_K

W, H = 320, 240
K = make_K(300.0, 300.0, 159.5, 119.5)


def jpg_bytes(seed: int, size=(W, H)) -> bytes:
    """A textured photo-like JPEG (gradient + noise) so drawings are checked on a non-blank image."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, size[0])[None, :, None]
    y = np.linspace(0, 1, size[1])[:, None, None]
    img = (np.concatenate([x * 200 + 30 + 0 * y, y * 180 + 40 + 0 * x, (x + y) * 60 + 60], axis=2)
           + rng.normal(0, 8, (size[1], size[0], 3)))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def kept_object(object_id: str, category: str, box: Box3D, ann_id=None, K_=K, size=(W, H), bbox=None, quality=None) -> dict:
    """A kept object whose source 2D box is the projection of its 3D box (unless `bbox` given)."""
    proj = project_box(box, K_, size)
    d = box.to_omni3d()
    return {
        "object_id": object_id, "category": category, "category_raw": category, "source_ann_id": ann_id,
        "bbox_xyxy": list(bbox if bbox is not None else proj), "status": "kept", "reason": None,
        "mask_source": "annotation", "box3d": d, "quality": quality or {"n_points": 500, "proj_iou": 0.9},
    }


def rejected_object(object_id: str, category: str, bbox, reason: str, ann_id=None) -> dict:
    return {"object_id": object_id, "category": category, "category_raw": category, "source_ann_id": ann_id,
            "bbox_xyxy": list(bbox), "status": "rejected", "reason": reason, "mask_source": None, "box3d": None}


def make_record(key: str, objects: list[dict], image_id=1, K_=K, size=(W, H), status="lifted", reason=None,
                file_name=None, gravity=(0.0, 1.0, 0.0)) -> dict:
    return {
        "schema_version": 1, "key": key, "source": "omni3d", "image_id": image_id,
        "file_name": file_name or f"{key}.jpg", "width": size[0], "height": size[1],
        "K": np.asarray(K_).tolist(), "K_source": "dataset", "depth_source": "sensor",
        "gravity_cam": list(gravity), "gravity_source": "dataset", "status": status, "reason": reason,
        "tags": [], "objects": objects,
    }


def qa_sample(image_key: str, n: int, questions: list[tuple[str, str, str, str]]) -> dict:
    """questions: (family, form, question, answer_text)."""
    qs = [{"qid": f"{image_key}-q{i}", "family": f, "template_id": f"{f}_v1", "form": m, "object_ids": [],
           "question": q, "reasoning": None, "answer_text": a, "answer": {"value": a}}
          for i, (f, m, q, a) in enumerate(questions)]
    conv = []
    for q in qs:
        conv += [{"from": "human", "value": q["question"]}, {"from": "gpt", "value": q["answer_text"]}]
    msgs = [{"role": "user" if c["from"] == "human" else "assistant", "content": c["value"]} for c in conv]
    return {"schema_version": 1, "key": f"{image_key}-{n}", "image_key": image_key, "source": "omni3d",
            "width": W, "height": H, "conversations": conv, "messages": msgs, "questions": qs}


def write_output(out: Path, records: list[dict], qa: list[dict] | None = None, depths: dict | None = None,
                 jpgs: bool = True, rejected_dir: list[dict] | None = None, errors: list[dict] | None = None) -> Path:
    """Write OUT/repository/shard-000000.tar (+ depth, rejected/, errors/) and OUT/qa/shard-000000.tar."""
    repo = out / "repository"
    repo.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(repo / "shard-000000.tar")) as tw:
        for i, r in enumerate(records):
            s = {"__key__": r["key"], "json": json.dumps(r).encode()}
            if jpgs:
                s["jpg"] = jpg_bytes(i, (r["width"], r["height"]))
            if depths and r["key"] in depths:
                buf = io.BytesIO()
                Image.fromarray(np.clip(np.round(depths[r["key"]] * 1000), 0, 65535).astype(np.uint16)).save(buf, format="PNG")
                s["depth.png"] = buf.getvalue()
            tw.write(s)
    if rejected_dir:
        (repo / "rejected").mkdir(exist_ok=True)
        (repo / "rejected" / "rejected-000000.jsonl").write_text("".join(json.dumps(d) + "\n" for d in rejected_dir))
    if errors:
        (repo / "errors").mkdir(exist_ok=True)
        (repo / "errors" / "errors-000000.jsonl").write_text("".join(json.dumps(d) + "\n" for d in errors))
    if qa:
        (out / "qa").mkdir(exist_ok=True)
        with wds.TarWriter(str(out / "qa" / "shard-000000.tar")) as tw:
            for s in qa:
                tw.write({"__key__": s["key"], "json": json.dumps(s).encode()})
    return out


def small_output(tmp: Path) -> Path:
    """Three images: two lifted (with a rejected object each) and one rejected image; QA for two."""
    chair = Box3D.from_gravity([-0.6, 0.3, 3.0], [0.5, 0.9, 0.5], 0.3)
    table = Box3D.from_gravity([0.7, 0.4, 4.0], [1.2, 0.75, 0.8], -0.2)
    sofa = Box3D.from_gravity([0.0, 0.5, 5.0], [2.0, 0.8, 0.9], 0.0)
    recs = [
        make_record("omni3d_1", [kept_object("omni3d_1-0", "chair", chair, 11),
                                 kept_object("omni3d_1-1", "table", table, 12),
                                 rejected_object("omni3d_1-2", "chair", [10, 10, 40, 60], "too_few_points", 13)], 1),
        make_record("omni3d_2", [kept_object("omni3d_2-0", "sofa", sofa, 21),
                                 rejected_object("omni3d_2-1", "box", [200, 150, 230, 190], "proj_iou_low", 22)], 2),
        make_record("omni3d_3", [rejected_object("omni3d_3-0", "chair", [50, 50, 90, 120], "depth_missing", 31)], 3,
                    status="rejected", reason="no_object_kept"),
    ]
    qa = [qa_sample("omni3d_1", 0, [("distance", "numeric", "How far is the chair?", "3.0 m"),
                                   ("size", "choice", "Which is taller, the chair or the table?", "the chair")]),
          qa_sample("omni3d_2", 0, [("count", "count", "How many sofas are there?", "1")])]
    errors = [{"source": "omni3d", "reason": "image_missing", "level": "image", "image_id": 4}]
    return write_output(tmp, recs, qa, errors=errors)


# ----------------------------------------------------------------------------- own tests
def test_fixture_records_match_schemas(tmp_path):
    from lifting.resources import validation_error
    from lifting.viz.reader import iter_qa, iter_records, resolve

    out = small_output(tmp_path)
    paths = resolve(out)
    assert paths.repo_dir == out / "repository" and paths.qa_dir == out / "qa"
    recs = [r for r, _ in iter_records(paths.repo_dir, with_image=True)]
    assert [r["key"] for r in recs] == ["omni3d_1", "omni3d_2", "omni3d_3"]
    for r in recs:
        assert validation_error(r, "image_record") is None
    qas = list(iter_qa(paths.qa_dir))
    assert len(qas) == 2
    for s in qas:
        assert validation_error(s, "qa_sample") is None


def test_reader_returns_images_depth_and_rejected_dir(tmp_path):
    from lifting.viz.reader import decode_depth, iter_records, iter_side

    depth = np.full((H, W), 2.5, np.float32)
    rec = make_record("k_a", [])
    extra = make_record("k_b", [rejected_object("k_b-0", "cup", [0, 0, 5, 5], "too_small")], status="rejected",
                        reason="no_object_kept")
    out = write_output(tmp_path, [rec], depths={"k_a": depth}, rejected_dir=[extra, {"object_id": "x", "reason": "r"}])
    got = list(iter_records(out / "repository", with_image=True, with_depth=True))
    assert [r["key"] for r, _ in got] == ["k_a", "k_b"]
    files = got[0][1]
    assert files["jpg"][:2] == b"\xff\xd8"
    d = decode_depth(files["depth.png"], got[0][0])
    assert d.shape == (H, W) and np.allclose(d, 2.5)
    assert len(list(iter_side(out / "repository", "rejected"))) == 2

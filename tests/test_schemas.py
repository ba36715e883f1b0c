"""JSON Schemas of the records that land on disk (schemas/*.json, lifting/resources.py)."""
from __future__ import annotations

import copy
import hashlib
import json

import jsonschema
import numpy as np
import pytest

from lifting.boxes import Box3D
from lifting.records import SCHEMA_VERSION, make_key
from lifting.resources import load_schema, resource_dir, validate, validation_error

SCHEMAS = sorted(p.name.removesuffix(".schema.json") for p in resource_dir("schemas").glob("*.schema.json"))


def test_the_three_foundation_schemas_exist():
    assert {"image_record", "qa_sample", "manifest"} <= set(SCHEMAS)


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_is_valid_json_schema(name):
    schema = load_schema(name)
    assert schema.get("$schema"), "declare the draft, so the right meta-schema checks it"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    assert schema.get("type") == "object"
    if "schema_version" in schema.get("properties", {}):
        assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


# ----------------------------------------------------------------------------- examples
def image_record() -> dict:
    box = Box3D.from_gravity([0.4, 0.3, 2.5], [0.5, 0.9, 0.45], 0.3, [0.05, 0.99, 0.1])
    key = make_key("coco", "000000397133")
    return {
        "schema_version": 1,
        "key": key,
        "source": "coco",
        "image_id": 397133,
        "file_name": "000000397133.jpg",
        "width": 640,
        "height": 427,
        "K": [[520.0, 0.0, 319.5], [0.0, 520.0, 213.0], [0.0, 0.0, 1.0]],
        "K_source": "fov_prior",
        "depth_source": "model:depth-anything-v2-small",
        "gravity_cam": [0.05, 0.99, 0.1],
        "gravity_source": "floor_plane",
        "status": "lifted",
        "reason": None,
        "tags": ["chair", "dining table"],
        "objects": [
            {
                "object_id": f"{key}-0",
                "category": "chair",
                "category_raw": "chair",
                "source_ann_id": 1234,
                "bbox_xyxy": [101.5, 88.0, 180.25, 230.0],
                "status": "kept",
                "reason": None,
                "mask_source": "dataset",
                "box3d": box.to_omni3d(),
                "quality": {"proj_iou": 0.81, "n_points": 2210, "depth_spread_m": 0.4, "visible_fraction": 0.9},
            },
            {
                "object_id": f"{key}-1",
                "category": "dining table",
                "category_raw": None,
                "source_ann_id": "ann-7",
                "bbox_xyxy": [0.0, 200.0, 640.0, 427.0],
                "status": "rejected",
                "reason": "too_few_points",
                "mask_source": None,
                "box3d": None,
            },
        ],
    }


def qa_sample() -> dict:
    q = "How far is the chair from the camera?"
    a = "The chair Bbox(chair,512,480,2.50,0.30,0.50,0.90,0.45) is about 2.5 m away."
    return {
        "schema_version": 1,
        "key": "coco_000000397133-q0",
        "image_key": "coco_000000397133",
        "source": "coco",
        "width": 640,
        "height": 427,
        "conversations": [{"from": "human", "value": "<image>\n" + q}, {"from": "gpt", "value": a}],
        "messages": [{"role": "system", "content": "You are a spatial assistant."},
                     {"role": "user", "content": q}, {"role": "assistant", "content": a}],
        "questions": [
            {
                "qid": "q0",
                "family": "distance",
                "template_id": "distance/camera_distance/v1",
                "form": "numeric",
                "object_ids": ["coco_000000397133-0"],
                "question": q,
                "reasoning": None,
                "answer_text": a,
                "answer": {"value": 2.5, "unit": "m"},
                "rephrased": False,
                "rephrase_status": None,
            }
        ],
    }


def manifest() -> dict:
    payloads = [b"shard zero bytes", b"shard one"]
    shards = [{"name": f"shard-{i:06d}.tar", "samples": 10 + i, "bytes": len(p), "sha256": hashlib.sha256(p).hexdigest()}
              for i, p in enumerate(payloads)]
    return {
        "schema_version": 1,
        "kind": "repository",
        "shards": shards,
        "totals": {"shards": 2, "samples": 21, "bytes": sum(len(p) for p in payloads)},
        "config": {"depth_model": "depth-anything-v2-small", "seed": 0},
        "versions": {"lift3d": "0.1.0", "code": None, "models": {}, "packages": {"numpy": np.__version__}},
    }


EXAMPLES = {"image_record": image_record, "qa_sample": qa_sample, "manifest": manifest}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_realistic_records_validate(name):
    rec = json.loads(json.dumps(EXAMPLES[name]()))  # as read back from disk
    assert validation_error(rec, name) is None
    validate(rec, name)


def test_rejected_image_record_validates():
    rec = image_record()
    rec["status"], rec["reason"] = "rejected", "no_object_kept"
    rec["objects"] = [rec["objects"][1]]
    assert validation_error(rec, "image_record") is None


# ----------------------------------------------------------------------------- broken records
def _del(path):
    def f(r):
        *head, last = path
        for k in head:
            r = r[k]
        del r[last]
    return f


def _set(path, value):
    def f(r):
        *head, last = path
        for k in head:
            r = r[k]
        r[last] = value
    return f


BROKEN = [
    # (schema, mutation, a word the message must contain)
    ("image_record", _del(["gravity_source"]), "gravity_source"),
    ("image_record", _del(["objects", 0, "box3d"]), "box3d"),
    ("image_record", _set(["objects", 0, "box3d"], None), "objects/0/box3d"),  # kept without a box
    ("image_record", _set(["objects", 0, "reason"], "why"), "objects/0/reason"),  # kept with a reason
    ("image_record", _set(["objects", 1, "reason"], None), "objects/1/reason"),  # rejected without one
    ("image_record", _set(["key"], "coco.000000397133"), "key"),
    ("image_record", _set(["schema_version"], 2), "schema_version"),
    ("image_record", _set(["K"], [[1, 0, 0], [0, 1, 0]]), "K"),
    ("image_record", _set(["objects", 0, "box3d", "dimensions"], [0.5, -0.9, 0.4]), "objects/0/box3d"),
    ("image_record", _set(["gravity_source"], "guess"), "gravity_source"),
    ("image_record", _set(["objects", 0, "quality", "proj_iou"], 1.5), "proj_iou"),
    ("qa_sample", _set(["key"], "coco_1.q0"), "key"),
    ("qa_sample", _del(["questions", 0, "template_id"]), "template_id"),
    ("qa_sample", _set(["questions", 0, "form"], "essay"), "form"),
    ("qa_sample", _set(["conversations"], [{"from": "human", "value": "hi"}]), "conversations"),
    ("qa_sample", _set(["messages", 1, "role"], "bot"), "role"),
    ("qa_sample", _set(["questions"], []), "questions"),
    ("manifest", _set(["shards", 0, "sha256"], "ABC123"), "sha256"),
    ("manifest", _set(["shards", 1, "sha256"], hashlib.sha256(b"x").hexdigest().upper()), "sha256"),
    ("manifest", _set(["shards", 0, "name"], "shard-0.tar"), "name"),
    ("manifest", _set(["kind"], "other"), "kind"),
    ("manifest", _del(["versions", "lift3d"]), "lift3d"),
    ("manifest", _set(["shards", 0, "samples"], -1), "samples"),
]


@pytest.mark.parametrize("name, mutate, word", BROKEN, ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)])
def test_broken_records_fail_with_a_message(name, mutate, word):
    rec = copy.deepcopy(EXAMPLES[name]())
    mutate(rec)
    msg = validation_error(rec, name)
    assert isinstance(msg, str) and msg
    assert "\n" not in msg and len(msg) <= 300
    assert word in msg, msg
    with pytest.raises(jsonschema.ValidationError):
        validate(rec, name)


def test_make_key_always_matches_the_key_pattern():
    import re

    pattern = re.compile(load_schema("image_record")["properties"]["key"]["pattern"])
    for source, image_id in [("coco", 397133), ("openimages", "0a1b.c2d"), ("images", "sub dir/img 1.JPG"),
                             ("omni3d", "SUNRGBD/kv2/0001"), ("objects365", "über:1")]:
        key = make_key(source, image_id)
        assert pattern.fullmatch(key), key
        assert "." not in key

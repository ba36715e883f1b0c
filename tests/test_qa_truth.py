"""`lifting.qa_truth` / `lift3d eval --qa`: QA answers recomputed from GT boxes.

The recomputation is a second implementation of docs/QA_FAMILIES.md. When the lifted boxes
are the GT boxes every scorable answer must come out true (an engine or checker bug shows
up as falsehood); moving one object must make exactly the answers that depend on its
moved quantity false; a run through the CLI reports it next to the 3D IoU figures."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from lifting.evaluate import GTImage, GTObject
from lifting.boxes import Box3D
from lifting.qa import QAConfig, generate_qa
from lifting.qa_truth import QATruth
from test_qa_scenes import random_record


def _with_ann_ids(rec: dict) -> dict:
    rec = copy.deepcopy(rec)
    for i, o in enumerate(rec["objects"]):
        o["source_ann_id"] = 100 + i
    return rec


def _gt_of(rec: dict, moved: dict | None = None) -> GTImage:
    """GT image holding every kept object's own box (optionally with some centres moved by
    a gravity-frame offset (3,) metres)."""
    from lifting.boxes import gravity_frame

    G = gravity_frame(np.asarray(rec["gravity_cam"], float))
    im = GTImage(rec["key"], "", rec["width"], rec["height"], np.asarray(rec["K"]),
                 gravity_cam=np.asarray(rec["gravity_cam"], float))
    for o in rec["objects"]:
        if o["status"] != "kept":
            continue
        b = Box3D.from_omni3d(o["box3d"], rec["gravity_cam"])
        if moved and o["object_id"] in moved:
            b = Box3D(b.center_cam + G @ np.asarray(moved[o["object_id"]], float), b.dimensions, b.R_cam, b.yaw)
        im.objects.append(GTObject(o["source_ann_id"], o["category"], tuple(o["bbox_xyxy"]), b))
    return im


def _truth(pairs) -> dict:
    t = QATruth(lambda rec: (gts[rec["key"]], gts[rec["key"]].gravity_cam))
    gts = {}
    for rec, sample, gt in pairs:
        gts[rec["key"]] = gt
        t.add(sample, rec)
    return t.summary()


def _corpus(n=60):
    cfg = QAConfig(max_per_family=4, max_questions=40)
    out = []
    for s in range(n):
        rec = _with_ann_ids(random_record(s, n_objects=3 + s % 6))
        sample = generate_qa(rec, QAConfig(**{**cfg.__dict__, "seed": s}))
        if sample:
            out.append((rec, sample))
    return out


def test_answers_from_gt_boxes_are_all_true_under_gt():
    corpus = _corpus()
    r = _truth([(rec, smp, _gt_of(rec)) for rec, smp in corpus])
    assert r["questions"] > 1000 and r["unmappable"] == 0
    assert r["false"] == 0, r["false_examples"][:3]
    assert r["ambiguous"] == 0  # the engine never asks inside a margin, and GT = lift here
    assert r["binary_truth_rate"] == 1.0 and r["numeric_within_10pct"] == 1.0 and r["clock_exact"] == 1.0
    assert r["not_scored"] == sum(1 for _, s in corpus for q in s["questions"] if q["form"] == "boxes")
    fams = set(r["per_family"])
    assert {"relation_position", "relation_size", "metric_distance", "metric_object", "direction_clock",
            "multi_order", "multi_extreme", "multi_count", "viewpoint_opposite", "viewpoint_object"} <= fams


def test_a_moved_object_makes_its_answers_false():
    """GT has one object 3 m further right than lifted: every left/right answer about it that
    the move flips is false; its camera distance is off; answers about other pairs stay true."""
    corpus = _corpus(30)
    pairs, flipped = [], 0
    for rec, smp in corpus:
        kept = [o for o in rec["objects"] if o["status"] == "kept"]
        oid = kept[0]["object_id"]
        pairs.append((rec, smp, _gt_of(rec, {oid: [3.0, 0.0, 0.0]})))
    r = _truth(pairs)
    assert r["false"] > 0 and r["unmappable"] == 0
    for ex in r["false_examples"]:
        assert ex["family"] not in ("relation_size", "metric_object") or ex["axis"] == "camera_distance", ex
    per = r["per_family"]
    assert per["relation_size"]["false"] == 0  # sizes did not change
    assert per["relation_position"]["false"] > 0


def test_unmappable_objects_are_counted_by_reason():
    rec, smp = next((r, s) for r, s in _corpus(10) if any(q["form"] != "boxes" for q in s["questions"]))
    rec2 = copy.deepcopy(rec)
    for o in rec2["objects"]:
        o.pop("source_ann_id")
    r = _truth([(rec2, smp, _gt_of(rec))])
    n = sum(q["form"] != "boxes" for q in smp["questions"])
    assert r["unmappable"] == n and r["unmappable_reasons"] == {"no_source_ann_id": n}


def test_eval_qa_end_to_end(tmp_path, capsys):
    """lift3d run on synthetic scenes, then lift3d eval --gt --qa: one JSON object with the
    3D IoU figures and `qa_truth` whose counts add up; --qa without --gt is one line."""
    from lifting.synthetic import SceneConfig, write_dataset
    from pipelines import cli

    ann = write_dataset(tmp_path / "scenes", n_scenes=4, seed=5, config=SceneConfig(width=240, height=180))
    out = tmp_path / "out"
    assert cli.main(["run", "--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
                     "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert cli.main(["eval", "--repository", str(out), "--gt", str(ann), "--qa", str(out), "--out", str(report)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert json.loads(report.read_text()) == rep
    q = rep["qa_truth"]
    assert rep["mean_iou3d"] > 0.3 and q["questions"] > 0 and q["images"] == 4
    assert sum(q[k] for k in ("true", "false", "ambiguous", "unmappable", "not_scored")) == q["questions"]
    assert q["unmappable"] == 0 and q["truth_rate"] > 0.6
    assert cli.main(["eval", "--repository", str(out), "--qa", str(out)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--qa needs --gt" in err[0]
    # the gallery shows it
    assert cli.main(["viz", "--repository", str(out), "--out", str(tmp_path / "viz"), "--eval", str(report)]) == 0
    page = (tmp_path / "viz" / "index.html").read_text()
    assert "QA truth vs GT" in page and "relation_position" in page.split("QA truth vs GT")[1]


def test_uncertain_objects_are_not_compared_within_their_uncertainty():
    """Two chairs 0.6 m apart side by side: with centres known to 5 cm every left/right
    question about them is asked; with each centre uncertain by 1 m (quality.uncertainty,
    as the lifter writes it) none is, unless uncertainty_k is 0."""
    from lifting.qa.config import Margins
    from test_qa_scenes import make_object, make_record

    def record(sigma):
        objs = [make_object("a", "chair", [-0.3, 1.0, 4.0], [0.5, 0.9, 0.5], 0.0, [0.0, 1.0, 0.0]),
                make_object("b", "table", [0.3, 1.0, 4.0], [0.5, 0.9, 0.5], 0.0, [0.0, 1.0, 0.0])]
        for o in objs:
            o["quality"] = {"uncertainty": {"center_m": sigma, "height_log": 0.05, "footprint_log": 0.05}}
        return make_record("pair", objs, [0.0, 1.0, 0.0])

    def horizontal(rec, k):
        n = 0
        for seed in range(40):
            cfg = QAConfig(seed=seed, families={"relation_position": 1.0}, max_per_family=4,
                           margins=Margins(uncertainty_k=k))
            smp = generate_qa(rec, cfg)
            n += sum(q["params"].get("axis") == "horizontal" for q in (smp or {}).get("questions", []))
        return n

    assert horizontal(record(0.05), 1.0) > 0
    assert horizontal(record(1.0), 1.0) == 0
    assert horizontal(record(1.0), 0.0) > 0


def test_box_uncertainty_grows_with_distance_prior_boxes_and_disagreement():
    from lifting.lift.uncertainty import box_uncertainty

    near, far = box_uncertainty("sparse", False, 10.0), box_uncertainty("sparse", False, 40.0)
    assert far["center_m"] == pytest.approx(4 * near["center_m"])
    assert box_uncertainty("sparse", True, 40.0)["center_m"] > far["center_m"]
    assert box_uncertainty("stereo", False, 40.0)["center_m"] > far["center_m"]
    bad = box_uncertainty("sparse", False, 40.0, disagreement=1.0)
    assert bad["center_m"] > 10 * far["center_m"] and bad["footprint_log"] > 1.0
    assert box_uncertainty("dense", False, 0.2)["center_m"] == pytest.approx(0.05)  # the floor

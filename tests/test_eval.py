"""lift3d eval: matching and metrics against a hand-computed case, and end to end on synthetic GT."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from lifting.boxes import Box3D, rot_y
from lifting.camera import make_K, scale_K
from lifting.evaluate import (Evaluator, SelfConsistency, depth_box_agreement, hungarian_match, pair_figures,
                              parse_gt, yaw_alignment)
from test_viz_fixtures import kept_object, make_record, rejected_object, write_output

# Hand-computed case: 100 x 100 image, f = 90 px, principal point at the centre (49.5 px in
# pixel-centre coordinates, i.e. 50 in the pixel-edge coordinates of 2D boxes).
K = make_K(90.0, 90.0, 49.5, 49.5)
SIZE = (100, 100)
I3 = np.eye(3).tolist()


def _ann(aid, cat_id, center, dims, bbox_xyxy):
    x0, y0, x1, y1 = bbox_xyxy
    return {"id": aid, "image_id": 7, "category_id": cat_id, "bbox": [x0, y0, x1 - x0, y1 - y0],
            "center_cam": list(center), "dimensions": list(dims), "R_cam": I3}


def hand_gt() -> dict:
    return {
        "images": [{"id": 7, "file_name": "scene/000007.jpg", "width": 100, "height": 100, "K": K.tolist()}],
        "categories": [{"id": 1, "name": "chair"}, {"id": 2, "name": "table"}],
        "annotations": [
            _ann(1, 1, (0, 0, 5), (1, 1, 1), (40, 40, 60, 60)),   # A: matched, shifted 0.5 m in x
            _ann(2, 2, (0, 0, 10), (2, 1, 1), (40, 45, 60, 55)),  # B: matched, 0.6 m too long
            _ann(3, 1, (3, -2, 8), (1, 1, 1), (80, 0, 95, 20)),   # C: never lifted
            _ann(4, 1, (-3, 2.5, 8), (1, 1, 1), (0, 70, 20, 95)),  # D: lifted but rejected
            {"id": 5, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2]},  # no 3D: not scorable
            dict(_ann(6, 1, (0, 0, 3), (1, 1, 1), (0, 0, 1, 1)), valid3D=False),
        ],
    }


def box(center, dims, yaw=0.0):
    return Box3D(center, dims, rot_y(yaw), yaw)


def hand_record(with_ann_ids=True) -> dict:
    ids = (lambda i: i) if with_ann_ids else (lambda i: None)
    objs = [
        kept_object("k-0", "chair", box((0.5, 0, 5), (1, 1, 1)), ids(1), K, SIZE),
        kept_object("k-1", "table", box((0, 0, 10), (2, 1, 1.6)), ids(2), K, SIZE),
        kept_object("k-2", "cup", box((-3, -3, 10), (0.5, 0.5, 0.5)), None, K, SIZE),  # E: matches nothing
        rejected_object("k-3", "chair", (0, 70, 20, 95), "too_few_points", ids(4)),
    ]
    return make_record("k", objs, image_id=7, K_=K, size=SIZE, file_name="000007.jpg")


# Expected figures, derived by hand:
#   A: 3D overlap is half of each unit cube -> IoU = 0.5 / 1.5 = 1/3; centre error 0.5 m.
#      projection of x in [0, 1], z in [4.5, 5.5]: u in [50, 50 + 90 / 4.5] = [50, 70],
#      v in [40, 60] -> 2D IoU with [40, 60]^2 = 200 / 600 = 1/3.
#   B: GT (2 x 1 x 1) inside pred (2 x 1 x 1.6) -> IoU = 2 / 3.2 = 0.625; centre error 0;
#      size error mean(0, 0, 0.6) = 0.2; projections: GT near face z = 9.5 -> u = 50 +- 90 / 9.5,
#      v = 50 +- 45 / 9.5; pred near face z = 9.2 -> the same with 9.2; the GT projection
#      lies inside the pred's -> IoU = area ratio = (9.2 / 9.5)^2.
#   projected IoU is measured against the projection of the GT 3D box (amodal); the
#   annotated `bbox` is only used to pair rejected objects (D).
IOU_A, IOU_B = 1.0 / 3.0, 0.625
PROJ_A, PROJ_B = 1.0 / 3.0, (9.2 / 9.5) ** 2


def check_hand_report(r: dict) -> None:
    assert r["images"] == 1
    assert r["gt_objects"] == 4
    assert r["gt_skipped"] == {"gt_no_box3d": 1, "gt_invalid3d": 1}
    assert (r["matched"], r["rejected"], r["missing"]) == (2, 1, 1)
    assert r["mean_iou3d"] == pytest.approx((IOU_A + IOU_B) / 4, abs=1e-9)
    assert r["mean_iou3d_matched"] == pytest.approx((IOU_A + IOU_B) / 2, abs=1e-9)
    assert r["recall_iou25"] == pytest.approx(2 / 4)
    assert r["recall_iou50"] == pytest.approx(1 / 4)
    assert r["median_center_err_m"] == pytest.approx(0.25, abs=1e-9)
    assert r["median_abs_rel_size_err"] == pytest.approx(0.1, abs=1e-9)
    assert r["median_abs_rel_depth_err"] == pytest.approx(0.0, abs=1e-12)
    assert r["mean_proj_iou"] == pytest.approx((PROJ_A + PROJ_B) / 2, abs=1e-9)
    assert r["rejection_reasons"] == {"too_few_points": 1}
    assert (r["lifted_kept"], r["lifted_unmatched"]) == (3, 1)
    assert r["precision_iou25"] == pytest.approx(2 / 3)
    chair, table = r["per_category"]["chair"], r["per_category"]["table"]
    assert chair["gt_objects"] == 3 and chair["matched"] == 1
    assert chair["mean_iou3d"] == pytest.approx(IOU_A / 3, abs=1e-9)
    assert chair["recall_iou25"] == pytest.approx(1 / 3)
    assert table["gt_objects"] == 1 and table["mean_iou3d"] == pytest.approx(IOU_B, abs=1e-9)
    assert table["median_abs_rel_size_err"] == pytest.approx(0.2, abs=1e-9)


def test_hand_computed_case_matched_by_annotation_id():
    ev = Evaluator(parse_gt(hand_gt()))
    ev.add(hand_record(with_ann_ids=True))
    r = ev.summary()
    assert r["match_mode_images"] == {"ann_id": 1}
    check_hand_report(r)


def test_hand_computed_case_matched_by_projected_iou():
    ev = Evaluator(parse_gt(hand_gt()))
    ev.add(hand_record(with_ann_ids=False))
    r = ev.summary()
    assert r["match_mode_images"] == {"proj_iou": 1}
    check_hand_report(r)


def test_cli_prints_exactly_one_json_object_and_writes_out(tmp_path, capsys):
    from pipelines.cli import main

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(hand_gt()))
    write_output(tmp_path / "out", [hand_record()])
    rc = main(["eval", "--repository", str(tmp_path / "out"), "--gt", str(gt), "--out", str(tmp_path / "m.json"),
               "--per-object", str(tmp_path / "objs.jsonl")])
    assert rc == 0
    stdout = capsys.readouterr().out
    report = json.loads(stdout)  # raises if there is anything but one JSON document
    assert stdout.strip().count("\n") == 0
    check_hand_report(report)
    assert json.loads((tmp_path / "m.json").read_text()) == report
    rows = [json.loads(x) for x in (tmp_path / "objs.jsonl").read_text().splitlines()]
    assert sorted((r["ann_id"], r["status"]) for r in rows) == [(1, "matched"), (2, "matched"), (3, "missing"),
                                                                (4, "rejected")]


def test_cli_user_errors(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["eval", "--repository", str(tmp_path)]) == 2
    write_output(tmp_path / "out", [hand_record()])
    assert main(["eval", "--repository", str(tmp_path / "out"), "--gt", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert "no repository shards" in err and "GT file not found" in err


def test_hungarian_beats_greedy():
    # greedy would take (0, 0) = 0.6 and leave row 1 unmatched; the optimum pairs crosswise
    score = np.array([[0.6, 0.5], [0.5, 0.0]])
    assert sorted(hungarian_match(score, 0.1)) == [(0, 1), (1, 0)]
    assert hungarian_match(np.array([[0.05]]), 0.1) == []
    assert hungarian_match(np.zeros((0, 3)), 0.1) == []


def test_images_absent_from_repository_count_zero_unless_present_only():
    gt = hand_gt()
    gt["images"].append({"id": 8, "file_name": "other.jpg", "width": 100, "height": 100, "K": K.tolist()})
    gt["annotations"].append(dict(_ann(9, 2, (0, 0, 4), (1, 1, 1), (30, 30, 70, 70)), image_id=8))
    for mode, n_gt, images in (("all", 5, 2), ("present", 4, 1)):
        ev = Evaluator(parse_gt(gt), images=mode)
        ev.add(hand_record())
        r = ev.summary()
        assert (r["gt_objects"], r["images"], r["images_missing"]) == (n_gt, images, 1)
        assert r["mean_iou3d"] == pytest.approx((IOU_A + IOU_B) / n_gt, abs=1e-9)


def test_resized_repository_image_rescales_gt_boxes():
    """A repository that stored the image at half size (K scaled) scores like the original."""
    rec = hand_record()
    Kh = scale_K(K, SIZE, (50, 50))
    half = make_record("k", [kept_object(o["object_id"], o["category"], Box3D.from_omni3d(o["box3d"]),
                                         o["source_ann_id"], Kh, (50, 50))
                             if o["status"] == "kept" else o for o in rec["objects"]],
                       image_id=7, K_=Kh, size=(50, 50), file_name="000007.jpg")
    ev = Evaluator(parse_gt(hand_gt()))
    ev.add(half)
    r = ev.summary()
    assert r["mean_proj_iou"] == pytest.approx((PROJ_A + PROJ_B) / 2, abs=1e-6)
    assert r["mean_iou3d"] == pytest.approx((IOU_A + IOU_B) / 4, abs=1e-9)


def test_yaw_and_size_error_are_symmetric_under_w_l_swap():
    gt = Box3D.from_gravity([0, 0, 5], [2.0, 1.0, 0.5], 0.3)
    same = Box3D.from_gravity([0, 0, 5], [0.5, 1.0, 2.0], 0.3 + math.pi / 2)  # the same solid
    f = pair_figures(same, gt, K, SIZE, None)
    assert f["iou3d"] == pytest.approx(1.0, abs=1e-9)
    assert f["abs_rel_size_err"] == pytest.approx(0.0, abs=1e-9)
    assert f["yaw_err_deg"] == pytest.approx(0.0, abs=1e-6)
    turned = Box3D.from_gravity([0, 0, 5], [2.0, 1.0, 0.5], 0.3 + math.radians(10) + math.pi)
    err, swapped = yaw_alignment(turned, gt)
    assert err == pytest.approx(10.0, abs=1e-6) and not swapped


def test_synthetic_scene_end_to_end(tmp_path, capsys):
    """GT written by the synthetic generator, repository holding the exact GT boxes: perfect
    scores; the same repository with depth scaled by 1.2 (a monocular scale error): lower IoU
    and exactly 20% relative depth error."""
    synthetic = pytest.importorskip("lifting.synthetic")
    from pipelines.cli import main

    cfg = synthetic.SceneConfig(width=160, height=120)
    ann_path = synthetic.write_dataset(tmp_path / "ds", n_scenes=2, seed=3, config=cfg)
    doc = json.loads(ann_path.read_text())
    gt = parse_gt(doc)
    assert gt.n_objects >= 4
    exact, scaled = [], []
    for im in doc["images"]:
        Kim = np.asarray(im["K"])
        anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
        objs = [kept_object(f"s{im['id']}-{a['id']}", a["category_name"], Box3D.from_omni3d(a), a["id"], Kim,
                            (im["width"], im["height"])) for a in anns]
        exact.append(make_record(f"synthetic_{im['id']}", objs, im["id"], Kim, (im["width"], im["height"]),
                                 file_name=im["file_name"], gravity=im["gravity_cam"]))
        rec = copy.deepcopy(exact[-1])
        for o in rec["objects"]:
            b = Box3D.from_omni3d(o["box3d"])
            o["box3d"] = Box3D(b.center_cam * 1.2, b.dimensions * 1.2, b.R_cam, b.yaw).to_omni3d()
        scaled.append(rec)
    write_output(tmp_path / "exact", exact)
    write_output(tmp_path / "scaled", scaled)
    assert main(["eval", "--repository", str(tmp_path / "exact"), "--gt", str(ann_path)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["gt_objects"] == gt.n_objects and r["matched"] == gt.n_objects
    assert r["mean_iou3d"] == pytest.approx(1.0, abs=1e-6)
    assert r["mean_proj_iou"] == pytest.approx(1.0, abs=1e-6)
    assert r["median_center_err_m"] == pytest.approx(0.0, abs=1e-6)
    assert main(["eval", "--repository", str(tmp_path / "scaled"), "--gt", str(ann_path), "--match", "proj_iou"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["matched"] == gt.n_objects  # a uniform scale about the camera projects identically
    assert r["mean_proj_iou"] == pytest.approx(1.0, abs=1e-6)
    assert r["median_abs_rel_depth_err"] == pytest.approx(0.2, abs=1e-6)
    assert r["median_abs_rel_size_err"] == pytest.approx(0.2, abs=1e-6)
    assert r["mean_iou3d"] < 0.7


def test_self_consistency_with_depth_maps_of_a_synthetic_scene(tmp_path, capsys):
    """Exact boxes agree with the exact depth inside their 2D boxes; boxes pushed 1.5 m back do not."""
    synthetic = pytest.importorskip("lifting.synthetic")
    from pipelines.cli import main

    scene = synthetic.generate_scene(5, synthetic.SceneConfig(width=160, height=120, n_objects=(3, 3)))
    size = (160, 120)
    good = [kept_object(f"o{i}", o.category, o.box, None, scene.K, size, bbox=o.bbox_xyxy)
            for i, o in enumerate(scene.objects) if o.bbox_xyxy is not None and o.visibility > 0.5]
    assert good
    for o, ob in zip(good, [o for o in scene.objects if o.bbox_xyxy is not None and o.visibility > 0.5]):
        a = depth_box_agreement(ob.box, ob.bbox_xyxy, scene.depth, scene.K)
        assert a["in_range"] and a["inside_frac"] > 0.5
        far = Box3D(ob.box.center_cam + np.array([0, 0, 1.5]), ob.box.dimensions, ob.box.R_cam, ob.box.yaw)
        b = depth_box_agreement(far, ob.bbox_xyxy, scene.depth, scene.K)
        assert not b["in_range"] and b["inside_frac"] < 0.05
    rec = make_record("syn_5", good, 5, scene.K, size, gravity=scene.gravity_cam.tolist())
    write_output(tmp_path, [rec], depths={"syn_5": scene.depth})
    assert main(["eval", "--repository", str(tmp_path)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["mode"] == "self_consistency"
    assert r["depth_agreement"]["images_with_depth"] == 1
    assert r["depth_agreement"]["objects"] == len(good)
    assert r["depth_agreement"]["in_range_frac"] == 1.0
    # the fixtures' 2D boxes are the visible-mask boxes: a projected amodal box can be larger
    assert 0.5 < r["mean_proj_iou"] <= 1.0


def test_self_consistency_counts_rejections_and_projected_iou():
    sc = SelfConsistency()
    b = box((0, 0, 5), (1, 1, 1))
    good = kept_object("a", "chair", b, None, K, SIZE)
    off = kept_object("b", "chair", b, None, K, SIZE, bbox=(50, 40, 70, 60))  # 1/3 overlap, see IOU_A
    sc.add(make_record("r", [good, off, rejected_object("c", "cup", (0, 0, 5, 5), "too_small")], K_=K, size=SIZE))
    sc.add(make_record("s", [rejected_object("d", "cup", (0, 0, 5, 5), "too_small")], K_=K, size=SIZE,
                       status="rejected", reason="no_object_kept"))
    r = sc.summary()
    assert (r["images"], r["images_rejected"], r["objects_kept"], r["objects_rejected"]) == (2, 1, 2, 2)
    assert r["mean_proj_iou"] == pytest.approx((1.0 + 1.0 / 3.0) / 2, abs=1e-9)
    assert r["proj_iou_ge50"] == 0.5
    assert r["rejection_reasons"] == {"too_small": 2}
    assert r["image_rejection_reasons"] == {"no_object_kept": 1}


def test_omni3d_native_2d_fields_and_unreadable_shard(tmp_path, capsys):
    """Omni3D files carry bbox2D_tight / bbox2D_proj ([-1]*4 when unknown) instead of `bbox`."""
    from pipelines.cli import main

    doc = hand_gt()
    for a in doc["annotations"]:
        b = a.pop("bbox")
        a["bbox2D_tight"] = [b[0], b[1], b[0] + b[2], b[1] + b[3]]
        a["bbox2D_proj"] = [-1, -1, -1, -1]
    gt = parse_gt(doc)
    d = next(o for o in gt.images[7].objects if o.ann_id == 4)
    assert d.bbox_xyxy == (0.0, 70.0, 20.0, 95.0)
    del doc["images"][0]["K"]  # without K the projection comes from bbox2D_proj: unknown here
    assert all(o.proj_xyxy is None for o in parse_gt(doc).images[7].objects)
    repo = tmp_path / "repository"
    repo.mkdir()
    (repo / "shard-000000.tar").write_bytes(b"not a tar file at all" * 100)
    assert main(["eval", "--repository", str(tmp_path)]) == 2
    assert "cannot read the repository" in capsys.readouterr().err

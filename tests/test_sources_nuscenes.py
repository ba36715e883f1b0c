"""nuScenes reader (mmdetection3d v1.x info .pkl) on the real keyframe of
../shared/data/real3d/nuscenes: GT boxes against the dataset's own 2D boxes and LiDAR,
the measured box convention, gravity, the restricted unpickler, missing files, and
`lift3d lift` + `lift3d eval --gt-source nuscenes` end to end."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from lifting.boxes import Box3D, iou_2d, project_box
from lifting.sources import SourceConfigError, open_source
from lifting.sources.depth_io import read_points
from lifting.sources.safe_pickle import load_pickle
from real3d_helpers import REAL3D, central_points, lift_and_eval, record_depth_points

NUSC = REAL3D / "nuscenes"
INFO_NAME = "n015-2018-07-24-11-22-45+0800.pkl"


@pytest.fixture(scope="module")
def info():
    if not (NUSC / INFO_NAME).is_file():
        pytest.skip(f"real nuScenes keyframe not found at {NUSC}")
    return NUSC / INFO_NAME


def _records(pkl, **kw):
    src = open_source("nuscenes", annotations=str(pkl), **kw)
    recs = list(src.iter_records())
    return [r for r in recs if hasattr(r, "objects")], [r for r in recs if not hasattr(r, "objects")], src.stats()


@pytest.fixture(scope="module")
def records(info):
    return _records(info)


def _proj_ious(recs, gt_box=lambda o: o.gt_box3d):
    out = []
    for r in recs:
        K = np.asarray(r.K)
        for o in r.objects:
            p = project_box(Box3D.from_omni3d(gt_box(o)), K, (r.width, r.height))
            out.append(iou_2d(p, tuple(o.bbox_xyxy)))
    return np.asarray(out)


def test_one_record_per_camera_and_every_box(records):
    recs, errors, stats = records
    assert len(recs) == 6 and not errors and stats["accounting_ok"]
    assert sum(len(r.objects) for r in recs) == 84  # the README's count
    assert len({r.image_id for r in recs}) == 6 and all("__CAM_" in r.image_id for r in recs)
    cats = [o.category for r in recs for o in r.objects]
    assert cats.count("pedestrian") == 36 and cats.count("barrier") == 28 and cats.count("car") == 11
    assert "traffic cone" in cats  # "traffic_cone", normalised
    r = recs[0]
    assert (r.width, r.height) == (1600, 900) and r.depth_encoding == "points"
    assert r.depth_params["columns"] == 5 and np.asarray(r.depth_params["to_cam"]).shape == (4, 4)
    assert r.gravity_cam is None  # estimated by the lifter unless gravity="ego"
    o = next(o for r in recs for o in r.objects if o.category == "pedestrian")
    assert o.attributes["attribute"].startswith("pedestrian.") and len(o.attributes["velocity"]) == 2
    for r in recs:  # numpy scalars and NaN velocities of the pickle do not leak into the records
        json.dumps(r.to_dict(), allow_nan=False)


def test_projected_gt_boxes_match_the_2d_boxes(records):
    """Centre (not bottom), heading (cos, 0, -sin), l along it: median IoU ~0.95."""
    ious = _proj_ious(records[0])
    assert len(ious) == 84 and np.median(ious) > 0.85 and np.mean(ious) > 0.85


def test_wrong_conventions_are_caught_by_the_same_check(records):
    """Bottom-centre reading (README: ~0.33) and the opposite yaw sign both lose."""
    recs = records[0]
    right = np.median(_proj_ious(recs))

    def bottom(o):
        b = o.gt_box3d
        return dict(b, center_cam=list(np.asarray(b["center_cam"]) - [0, b["dimensions"][1] / 2, 0]))

    def mirrored(o):  # yaw -> -yaw: heading (cos, 0, +sin)
        R = np.asarray(o.gt_box3d["R_cam"]) * [[1, 1, -1], [1, 1, 1], [-1, 1, 1]]
        return dict(o.gt_box3d, R_cam=R.tolist())

    assert np.median(_proj_ious(recs, bottom)) < 0.5 < right
    assert np.median(_proj_ious(recs, mirrored)) < right - 0.03


def test_lidar_points_in_the_gt_boxes_match_the_datasets_counts(info, records):
    """The sweep moved by the record's to_cam: points inside each camera box equal the info
    file's own `num_lidar_pts` of the same LiDAR-frame instance for most objects."""
    recs = records[0]
    data = load_pickle(info)["data_list"][0]
    counts = {tuple(np.round(np.asarray(i["bbox_3d"][:3], dtype=float), 3)): int(i["num_lidar_pts"])
              for i in data["instances"]}
    pts = read_points(recs[0].depth_path, 5)[:, :3].astype(np.float64)
    ours, theirs = [], []
    for r in recs:
        T = np.asarray(r.depth_params["to_cam"])
        cam = pts @ T[:3, :3].T + T[:3, 3]
        Ti = np.linalg.inv(T)
        for o in r.objects:
            box = Box3D.from_omni3d(o.gt_box3d)
            c = Ti[:3, :3] @ box.center_cam + Ti[:3, 3]
            theirs.append(counts[tuple(np.round(c, 3))])  # the same box in the LiDAR frame
            ours.append(int(box.contains(cam).sum()))
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert np.mean(ours == theirs) > 0.8 and abs(ours.sum() - theirs.sum()) < 0.05 * theirs.sum()


def test_lidar_depth_is_sparse_and_lands_in_the_gt_boxes(records):
    recs = records[0]
    fracs, valid = [], []
    for r in recs:
        depth, xyz = record_depth_points(r)
        valid.append((depth > 0).mean())
        for o in r.objects:
            pts = central_points(xyz, depth, o.bbox_xyxy)  # mostly the object itself
            if len(pts) >= 10:
                fracs.append(Box3D.from_omni3d(o.gt_box3d).contains(pts, tol=0.3).mean())
    fracs = np.asarray(fracs)
    assert 0.0005 < np.mean(valid) < 0.02  # sparse: well under 1 % of the pixels
    assert len(fracs) >= 10 and np.median(fracs) > 0.7 and np.mean(fracs > 0.5) > 0.5


def test_ego_gravity_is_level(info):
    recs, _, _ = _records(info, gravity="ego")
    for r in recs:
        g = np.asarray(r.gravity_cam)
        assert abs(np.linalg.norm(g) - 1) < 1e-9 and g @ [0, 1, 0] > np.cos(np.radians(5))


def test_options_are_checked(info, tmp_path):
    with pytest.raises(SourceConfigError):
        open_source("nuscenes", annotations=str(tmp_path / "nope.pkl"))
    with pytest.raises(SourceConfigError):
        open_source("nuscenes", annotations=str(info), sensor_depth="radar")
    with pytest.raises(SourceConfigError):
        open_source("nuscenes", annotations=str(info), gravity="global")
    (tmp_path / "v0.pkl").write_bytes(pickle.dumps({"infos": [], "metadata": {"version": "v1.0"}}))
    with pytest.raises(SourceConfigError, match="v1.x"):
        list(open_source("nuscenes", annotations=str(tmp_path / "v0.pkl")).iter_records())


class _Evil:
    def __reduce__(self):
        return os.system, ("touch pwned",)


def test_a_pickle_naming_a_forbidden_global_is_refused_and_runs_nothing(info, tmp_path, monkeypatch):
    from pipelines import cli

    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"metainfo": {}, "data_list": [_Evil()]}))
    with pytest.raises(SourceConfigError, match="system.*not allowed") as e:
        list(open_source("nuscenes", annotations=str(bad), images=str(NUSC)).iter_records())
    assert str(e.value).count("\n") == 0
    assert cli.main(["lift", "--source", "nuscenes", "--annotations", str(bad), "--images", str(NUSC),
                     "--out", str(tmp_path / "out"), "--segmenter", "none", "--workers", "1", "--no-progress"]) == 2
    assert not (tmp_path / "pwned").exists()


def _link(src: Path, dst: Path):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def test_the_nuscenes_tree_layout_and_missing_files(info, tmp_path):
    """Files under samples/CAM_*/ and samples/LIDAR_TOP/ are found; a missing camera image
    is image_missing and its boxes parent_image_failed; a missing sweep is depth_missing."""
    data = load_pickle(info)["data_list"][0]
    root = tmp_path / "nuscenes"
    for cam, im in data["images"].items():
        if cam != "CAM_BACK":
            _link(NUSC / im["img_path"], root / "samples" / cam / im["img_path"])
    lidar = data["lidar_points"]["lidar_path"]
    _link(NUSC / lidar, root / "samples" / "LIDAR_TOP" / lidar)
    _link(info, root / "infos.pkl")
    recs, errors, stats = _records(root / "infos.pkl")
    assert stats["accounting_ok"] and len(recs) == 5
    n_back = len(data["cam_instances"]["CAM_BACK"])
    reasons = sorted(e.reason for e in errors)
    assert reasons == ["image_missing"] + ["parent_image_failed"] * n_back
    assert stats["annotations_in"] == 84
    assert all(os.path.dirname(r.image_path).endswith(os.path.join("samples", r.extra["camera"])) for r in recs)
    (root / "samples" / "LIDAR_TOP" / lidar).unlink()
    recs, errors, stats = _records(root / "infos.pkl")
    assert stats["accounting_ok"] and not recs
    assert sorted({e.reason for e in errors}) == ["depth_missing", "image_missing", "parent_image_failed"]


def test_bad_boxes_become_named_errors(info, tmp_path):
    data = load_pickle(info)
    insts = data["data_list"][0]["cam_instances"]["CAM_FRONT"]
    insts[0]["bbox_3d"] = list(insts[0]["bbox_3d"])
    insts[0]["bbox_3d"][2] = -5.0  # centre behind the camera
    del insts[1]["bbox"]
    insts[2]["bbox_label_3d"] = 99
    insts[3]["bbox_3d"] = [1.0, 2.0]
    insts[4]["visibility"] = "2"  # a nuScenes visibility token: 40-60 % visible
    data["data_list"][0]["images"]["CAM_BACK"]["img_path"] = "../../etc/passwd"
    data["data_list"][0]["cam_instances"]["CAM_BACK_LEFT"] = np.zeros(3)  # not a list of boxes
    pkl = tmp_path / "edited.pkl"
    pkl.write_bytes(pickle.dumps(data))
    recs, errors, stats = _records(pkl, images=str(NUSC))
    n_back_left = len(load_pickle(info)["data_list"][0]["cam_instances"]["CAM_BACK_LEFT"])
    assert stats["accounting_ok"] and stats["annotations_in"] == 84 - n_back_left and len(recs) == 4
    by = {}
    for e in errors:
        by.setdefault(e.reason, []).append(e)
    assert {k: len(v) for k, v in by.items() if k != "parent_image_failed"} == {
        "behind_camera": 1, "bbox_missing": 1, "unknown_category": 1, "ann_malformed": 1,
        "image_path_outside_root": 1, "sample_malformed": 1}
    assert by["behind_camera"][0].source_ann_id.endswith("__CAM_FRONT-0")
    front = next(r for r in recs if r.image_id.endswith("__CAM_FRONT"))
    o = next(o for o in front.objects if o.source_ann_id.endswith("-4"))
    assert o.attributes["visibility_level"] == 2 and o.attributes["visibility"] == 0.5


def test_lift_and_eval_run_on_the_info_file(info, tmp_path):
    r = lift_and_eval("nuscenes", info, tmp_path)
    assert r["gt_objects"] == 84
    assert r["matched"] + r["rejected"] + r["missing"] == r["gt_objects"]

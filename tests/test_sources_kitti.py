"""KITTI reader on the real frames of ../shared/data/real3d/kitti: GT boxes against the
dataset's own 2D boxes and LiDAR / stereo depth, conventions, malformed inputs, and
`lift3d lift` + `lift3d eval --gt-source kitti` end to end."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from lifting.boxes import Box3D, iou_2d, project_box
from lifting.sources import SourceConfigError, open_source
from lifting.sources.kitti import parse_label_line, read_calib, velo_to_cam2
from real3d_helpers import REAL3D, central_points, lift_and_eval, record_depth_points

KITTI = REAL3D / "kitti" / "training"


@pytest.fixture(scope="module")
def kitti():
    if not KITTI.is_dir():
        pytest.skip(f"real KITTI frames not found at {KITTI}")
    return KITTI


def _records(split, **kw):
    src = open_source("kitti", annotations=str(split), **kw)
    recs = list(src.iter_records())
    return [r for r in recs if hasattr(r, "objects")], [r for r in recs if not hasattr(r, "objects")], src.stats()


def test_reads_every_frame_and_accounts_for_dontcare(kitti):
    recs, errors, stats = _records(kitti)
    assert len(recs) == 9 and stats["accounting_ok"]
    assert sum(len(r.objects) for r in recs) == 32  # the README's count
    assert {e.reason for e in errors} == {"ignored_category"}  # DontCare regions
    cats = {o.category for r in recs for o in r.objects}
    assert {"car", "pedestrian", "cyclist", "truck"} <= cats
    r = recs[0]
    assert r.width > 1200 and 370 <= r.height <= 376 and r.depth_encoding == "points"
    assert r.gravity_cam is None  # estimated by the lifter unless gravity="planes"


def test_projected_gt_boxes_match_the_2d_labels(kitti):
    """Camera-2 frame, bottom centre -> centre, length along the heading: vehicles project
    onto their 2D label with IoU ~0.9+, pedestrians lower (amodal 3D box vs tight 2D box)."""
    recs, _, _ = _records(kitti)
    ious = {"vehicle": [], "person": []}
    for r in recs:
        K = np.asarray(r.K)
        for o in r.objects:
            p = project_box(Box3D.from_omni3d(o.gt_box3d), K, (r.width, r.height))
            kind = "person" if o.category in ("pedestrian", "cyclist") else "vehicle"
            ious[kind].append(iou_2d(p, tuple(o.bbox_xyxy)))
    assert np.median(ious["vehicle"]) > 0.9 and min(ious["vehicle"]) > 0.8
    assert np.median(ious["person"]) > 0.7


def test_a_wrong_convention_is_caught_by_the_same_check(kitti):
    """Reading (x, y, z) as the box centre instead of its bottom shifts every projection."""
    calib = read_calib(str(kitti / "calib" / "000003.txt"))
    line = (kitti / "label_2" / "000003.txt").read_text().splitlines()[0]
    o = parse_label_line(line, np.zeros(3))
    K = calib["P2"][:, :3]
    right = iou_2d(project_box(Box3D.from_omni3d(o.gt_box3d), K, (1242, 375)), tuple(o.bbox_xyxy))
    wrong = dict(o.gt_box3d, center_cam=list(np.asarray(o.gt_box3d["center_cam"]) + [0, o.gt_box3d["dimensions"][1] / 2, 0]))
    bad = iou_2d(project_box(Box3D.from_omni3d(wrong), K, (1242, 375)), tuple(o.bbox_xyxy))
    assert right > 0.85 and bad < right - 0.2


@pytest.mark.parametrize("kind", ["velodyne", "disparity"])
def test_depth_points_fall_inside_the_gt_boxes(kitti, kind):
    recs, _, _ = _records(kitti, sensor_depth=kind)
    fracs, valid = [], []
    for r in recs:
        depth, xyz = record_depth_points(r)
        valid.append((depth > 0).mean())
        for o in r.objects:
            box = Box3D.from_omni3d(o.gt_box3d)
            if o.attributes["occluded"] >= 2 or box.center_cam[2] > 40:
                continue
            pts = central_points(xyz, depth, o.bbox_xyxy)  # mostly the object itself
            if len(pts) >= 5:
                fracs.append(box.contains(pts, tol=0.3).mean())
    if kind == "velodyne":
        assert 0.01 < np.mean(valid) < 0.1  # sparse: a few % of the pixels
        assert np.median(fracs) > 0.8
    else:
        assert np.mean(valid) > 0.9  # dense
        assert np.median(fracs) > 0.5  # stereo depth is noisy at range


def test_lidar_projection_is_the_devkit_chain(kitti):
    """velo -> cam2 = [I|t] R0_rect Tr_velo_to_cam, with P2 = K [I | t]: projecting a LiDAR
    point with K after that transform equals projecting the rectified point with P2."""
    calib = read_calib(str(kitti / "calib" / "000000.txt"))
    pts = np.fromfile(kitti / "velodyne" / "000000.bin", dtype="<f4").reshape(-1, 4)[::500, :3].astype(np.float64)
    T = velo_to_cam2(calib)
    cam2 = pts @ T[:3, :3].T + T[:3, 3]
    rect = (calib["R0_rect"] @ (calib["Tr_velo_to_cam"] @ np.c_[pts, np.ones(len(pts))].T)).T
    front = rect[:, 2] > 1
    a = cam2[front] @ calib["P2"][:, :3].T
    b = np.c_[rect[front], np.ones(front.sum())] @ calib["P2"].T
    np.testing.assert_allclose(a[:, :2] / a[:, 2:], b[:, :2] / b[:, 2:], atol=1e-6)


def test_planes_option_gives_a_level_gravity(kitti):
    recs, _, _ = _records(kitti, gravity="planes")
    for r in recs:
        g = np.asarray(r.gravity_cam)
        assert abs(np.linalg.norm(g) - 1) < 1e-9 and g[1] > np.cos(np.radians(5))


def test_bad_layouts_and_lines_are_named(tmp_path, kitti):
    with pytest.raises(SourceConfigError):
        open_source("kitti", annotations=str(tmp_path / "nope"))
    with pytest.raises(SourceConfigError):
        open_source("kitti", annotations=str(kitti), sensor_depth="sonar")
    split = tmp_path / "training"
    for d in ("image_2", "calib", "label_2", "velodyne"):
        (split / d).mkdir(parents=True)
    for fid in ("000000", "000001", "000002"):
        shutil.copy(kitti / "image_2" / "000000.png", split / "image_2" / f"{fid}.png")
    shutil.copy(kitti / "calib" / "000000.txt", split / "calib" / "000000.txt")
    (split / "calib" / "000001.txt").write_text("P2: 1 2 3\n")  # malformed
    lines = (kitti / "label_2" / "000000.txt").read_text() + "Car 0 0 0 1 2 3\n"  # a short line
    (split / "label_2" / "000000.txt").write_text(lines)
    recs, errors, stats = _records(split)
    assert stats["accounting_ok"] and len(recs) == 1
    reasons = sorted(e.reason for e in errors)
    assert reasons == ["ann_malformed", "calib_invalid", "calib_missing"]


def test_lift_and_eval_run_on_the_native_layout(kitti, tmp_path):
    r = lift_and_eval("kitti", kitti, tmp_path, ["--sensor-depth", "disparity", "--limit", "3"],
                      ["--images", "present"])
    assert r["gt_objects"] == 6  # the objects of frames 000000-000002
    assert r["gt_skipped"] == {"gt_ignored_category": 19}  # DontCare regions of the 9 frames
    assert r["matched"] + r["rejected"] + r["missing"] == r["gt_objects"]

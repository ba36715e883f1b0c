"""Omni3D-style JSON (K, sensor depth, GT 3D boxes) and raw RGB-D folders (shared/data/rgbd)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lifting.boxes import rot_y
from lifting.records import ErrorRecord, ImageRecord
from lifting.sources import open_source
from lifting.sources.depth_io import read_depth
from lifting.sources.image_io import read_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REDWOOD = DATA / "rgbd" / "redwood"


def _omni(tmp_path):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    depth_mm = np.full((30, 40), 2500, np.uint16)
    depth_mm[:5] = 0
    Image.fromarray(depth_mm).save(tmp_path / "depth" / "0.png")
    yaw = 0.4
    R = rot_y(yaw)
    images = [{"id": 0, "file_path": "rgb/0.jpg", "width": 40, "height": 30, "dataset_id": 3,
               "K": [[35.0, 0, 19.5], [0, 35.0, 14.5], [0, 0, 1]], "depth_file": "depth/0.png",
               "depth_scale": 1000, "gravity_cam": [0, 2.0, 0]},
              {"id": 1, "file_name": "rgb/1.jpg", "width": 40, "height": 30,
               "K": [[35.0, 0, 19.5], [0, 35.0, 14.5], [0, 0, 1]]}]
    corners = (np.random.default_rng(0).random((8, 3))).tolist()
    anns = [{"id": 5, "image_id": 0, "category_id": 1, "category_name": "chair", "valid3D": True,
             "bbox2D_tight": [-1, -1, -1, -1], "bbox2D_trunc": [2, 3, 20, 25], "bbox2D_proj": [1, 2, 21, 26],
             "center_cam": [0.1, 0.2, 2.5], "dimensions": [0.5, 0.9, 0.6], "R_cam": R.tolist(),
             "bbox3D_cam": corners, "truncation": 0.1, "visibility": 0.8},
            {"id": 6, "image_id": 0, "category_id": 2, "bbox": [5, 5, 10, 10], "valid3D": False,
             "center_cam": [-1, -1, -1], "dimensions": [-1, -1, -1], "R_cam": [[-1] * 3] * 3},
            {"id": 7, "image_id": 1, "category_id": 2, "bbox2D_tight": [0, 0, 40, 30]}]
    f = tmp_path / "omni3d.json"
    f.write_text(json.dumps({"images": images, "annotations": anns,
                             "categories": [{"id": 1, "name": "chair"}, {"id": 2, "name": "night_stand"}]}))
    return f, yaw, R, corners


def test_omni3d_round_trip(tmp_path):
    f, yaw, R, corners = _omni(tmp_path)
    src = open_source("omni3d", annotations=f, images=tmp_path)
    recs = list(src.iter_records())
    assert not [r for r in recs if isinstance(r, ErrorRecord)]
    imgs = {r.image_id: r for r in recs}
    a = imgs[0]
    assert a.K == [[35.0, 0, 19.5], [0, 35.0, 14.5], [0, 0, 1]]
    assert a.depth_path == str(tmp_path / "depth" / "0.png") and a.depth_scale == 1000.0
    assert a.depth_encoding == "png16" and a.gravity_cam == [0.0, 1.0, 0.0]
    assert a.image_path == str(tmp_path / "rgb" / "0.jpg") and a.extra["dataset_id"] == 3
    chair, stand = a.objects
    assert chair.bbox_xyxy == [2.0, 3.0, 20.0, 25.0]  # bbox2D_tight missing (-1) -> bbox2D_trunc
    g = chair.gt_box3d
    assert g["center_cam"] == [0.1, 0.2, 2.5] and g["dimensions"] == [0.5, 0.9, 0.6]
    assert np.allclose(g["R_cam"], R) and math.isclose(g["yaw"], yaw, abs_tol=1e-9)
    assert g["bbox3D_cam"] == corners and chair.attributes["visibility"] == 0.8
    assert stand.gt_box3d is None and stand.attributes["valid3D"] is False and stand.category == "night stand"
    assert imgs[1].depth_path is None and imgs[1].objects[0].bbox_xyxy == [0.0, 0.0, 40.0, 30.0]
    d = read_depth(a.depth_path, a.depth_scale, a.depth_encoding)
    assert d.shape == (30, 40) and np.all(d[5:] == 2.5) and np.all(d[:5] == 0)
    st = src.stats()
    assert (st["images_in"], st["annotations_in"], st["accounting_ok"]) == (2, 3, True)


def _need_redwood():
    if not REDWOOD.exists():
        pytest.skip(f"shared sample data not found at {REDWOOD}")


@pytest.mark.parametrize("use_match", [True, False])
def test_redwood_rgbd_folder(use_match):
    _need_redwood()
    src = open_source("rgbd", annotations=REDWOOD / "rgbd.match" if use_match else None, images=REDWOOD,
                      intrinsics=REDWOOD / "camera_primesense.json", check_files=True)
    recs = list(src.iter_records())
    assert len(recs) == 5 and all(isinstance(r, ImageRecord) for r in recs)
    assert src.stats()["accounting_ok"]
    r = recs[0]
    # camera_primesense.json stores the matrix column-major
    assert r.K == [[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]]
    assert (r.width, r.height, r.depth_scale) == (640, 480, 1000.0)
    assert r.image_path.endswith("color/00000.jpg") and r.depth_path.endswith("depth/00000.png")
    rgb = read_image(r.image_path)
    depth = read_depth(r.depth_path, r.depth_scale)
    assert rgb.shape == (480, 640, 3) and depth.shape == (480, 640)
    valid = depth[depth > 0]
    assert 0.3 < np.median(valid) < 4.0 and valid.max() < 5.0  # an indoor scene in metres

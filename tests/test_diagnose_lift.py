"""bench/diagnose_lift.py, the in-process tuning loop: its oracle columns are computed on
the same boxes the Evaluator scores, and user mistakes are one line."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lifting.lift import LiftConfig

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def diag():
    spec = importlib.util.spec_from_file_location("diagnose_lift", BENCH / "diagnose_lift.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_oracle_columns_bound_the_evaluators_iou_on_a_synthetic_street(diag, tmp_path, capsys):
    frames = diag.synthetic_frames("synthetic_outdoor_lidar", 2, tmp_path)
    s = diag.diagnose(frames, LiftConfig(), objects=True)
    o = s["oracle"]
    assert s["gt_objects"] >= 5
    # the base column is the Evaluator's own mean over all GT objects (rejected = 0)
    assert o["iou"] == pytest.approx(s["mean_iou3d"], abs=1e-3)
    # a GT centre with the predicted size and yaw overlaps the GT better than the predicted
    # box does on these LiDAR streets (sizes come from the category priors, centres from
    # a few returns): the column that says where the IoU goes
    assert o["size_yaw_only_wrong"] > o["iou"]
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " iou " in ln]
    assert len(lines) == s["gt_objects"]


def test_an_unknown_set_or_option_is_one_line(diag, capsys):
    assert diag.main(["no_such_set"]) == 2
    assert diag.main(["kitti_lidar", "--config", '{"no_such_option": 1}']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("diagnose_lift: unknown set") and "no_such_option" in err[1]

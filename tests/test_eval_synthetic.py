"""`lift3d eval` on synthetic scenes lifted with exact depth and masks (issue 9's acceptance check).

The scenes go through the real command line: `lift3d synth` writes an Omni3D-style RGB-D
dataset (16-bit millimetre depth, RLE masks, exact GT boxes), `lift3d lift` lifts it with
sensor depth, and `lift3d eval` prints one JSON object against the same file.
"""
from __future__ import annotations

import json

import pytest

from pipelines.cli import main


@pytest.fixture(scope="module")
def lifted(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalsyn")
    assert main(["synth", "--out", str(root / "data"), "--scenes", "16", "--seed", "0"]) == 0
    ann = root / "data" / "annotations.json"
    rc = main(["lift", "--source", "omni3d", "--annotations", str(ann), "--images", str(root / "data" / "images"),
               "--out", str(root / "out"), "--workers", "1", "--no-progress"])
    assert rc == 0
    return root, ann


def _eval(capsys, root, ann, *flags) -> dict:
    capsys.readouterr()
    assert main(["eval", "--repository", str(root / "out"), "--gt", str(ann), *flags]) == 0
    out = capsys.readouterr().out.strip()
    return json.loads(out)  # exactly one JSON object on stdout


def test_eval_reports_085_on_the_omni3d_population(lifted, capsys):
    root, ann = lifted
    report = _eval(capsys, root, ann, "--gt-filter", "omni3d")
    print({k: report[k] for k in ("gt_objects", "matched", "mean_iou3d", "median_center_err_m")})
    assert report["mean_iou3d"] >= 0.85
    assert report["median_center_err_m"] <= 0.03
    assert report["gt_skipped"]  # the filter did skip occluded / truncated objects


def test_eval_over_every_object_counts_rejections_as_zero(lifted, capsys):
    root, ann = lifted
    every = _eval(capsys, root, ann)
    omni = _eval(capsys, root, ann, "--gt-filter", "omni3d")
    assert every["gt_objects"] > omni["gt_objects"]
    assert every["mean_iou3d"] >= 0.80
    assert every["mean_iou3d"] <= every["mean_iou3d_matched"]

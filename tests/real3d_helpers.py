"""Shared by the tests on the real frames of ../shared/data/real3d."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REAL3D = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real3d"


def record_depth_points(rec) -> tuple[np.ndarray, np.ndarray]:
    """(depth (H, W) metres, xyz (H, W, 3) camera frame) of a real-dataset image record,
    through `read_record_depth` (the pipeline's reader), checked against the image size."""
    from lifting.camera import backproject
    from lifting.sources.depth_io import read_record_depth

    depth = read_record_depth(rec.to_dict())
    assert depth.shape == (rec.height, rec.width)
    return depth, backproject(depth, np.asarray(rec.K))


def central_points(xyz: np.ndarray, depth: np.ndarray, bbox_xyxy) -> np.ndarray:
    """(N, 3) points of the valid pixels in the central half of a 2D box (mostly the object
    itself, not its background), from (H, W, 3) back-projected `xyz` and (H, W) `depth`."""
    x0, y0, x1, y1 = bbox_xyxy
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4, (y1 - y0) / 4
    win = (slice(int(cy - hh), int(cy + hh) + 1), slice(int(cx - hw), int(cx + hw) + 1))
    return xyz[win][depth[win] > 0]


def lift_and_eval(source: str, annotations, tmp_path, lift_flags=(), eval_flags=()) -> dict:
    """`lift3d lift --source SOURCE --segmenter none` then `lift3d eval --gt-source SOURCE` on
    the same native files, in process; the eval report (both commands must exit 0)."""
    from pipelines import cli

    out = tmp_path / "out"
    assert cli.main(["lift", "--source", source, "--annotations", str(annotations), "--out", str(out),
                     "--segmenter", "none", "--workers", "1", "--no-progress", *lift_flags]) == 0
    report = tmp_path / "eval.json"
    assert cli.main(["eval", "--repository", str(out), "--gt", str(annotations), "--gt-source", source,
                     "--out", str(report), *eval_flags]) == 0
    return json.loads(report.read_text())

"""`lift3d export --format n3d-vlm` against the repository it came from.

The boxes are read back with a parser written here from N3D-VLM's format (not lift3d's
parser), the point maps with numpy and the depth PNGs with PIL, and compared with the
repository's records and depth (synthetic scenes: exact depth and boxes).
"""
from __future__ import annotations

import io
import json
import math
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lifting.boxes import Box3D, wrap_angle
from n3d_export_helpers import build
from pipelines.cli import main

# bbox_<i>=Bbox(<class>,<u>,<v>,<z>,<angle>,<sx>,<sy>,<sz>): u, v the centre's projection
# normalised to [0, 1] (3 places), z metres, angle radians, sizes metres (4 places).
NUM = r"(-?\d+(?:\.\d+)?)"
LINE_RE = re.compile(r"bbox_(\d+)=Bbox\((.+)," + ",".join([NUM] * 7) + r"\)")
GROUNDING_RE = re.compile(r"^<image>Identify the 3D boxes for all the '(.+)' in this scene\. "
                          r"The reference code is as followed: <code_template>$")
DETECTION = "<image>Detect boxes. The reference code is as followed: <code_template>"


def _places(token: str) -> int:
    return len(token.split(".")[1]) if "." in token else 0


def _repository():
    """{key: (record, depth metres (H, W) read with PIL)} of the repository, read with tarfile."""
    out = {}
    for shard in sorted(build().repo.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                key = name[:-5]
                depth = np.asarray(Image.open(io.BytesIO(members[f"{key}.depth.png"]))).astype(np.float64) / 1000.0
                out[key] = (json.loads(data), depth)
    return out


def _rows(export: Path):
    for stage in ("stage1", "stage2"):
        for p in sorted((export / stage).glob("*.jsonl")):
            for line in p.read_text().splitlines():
                yield stage, json.loads(line)


def test_every_exported_box_recovers_the_repository_box():
    repo = _repository()
    n_boxes = 0
    for stage, row in _rows(build().export):
        if row["question_type"] not in ("detection", "grounding"):
            continue
        key = Path(row["images"][0]).stem
        rec, _ = repo[key]
        user, reply = row["messages"][0]["content"], row["messages"][1]["content"]
        kept = [o for o in rec["objects"] if o["status"] == "kept"]
        if row["question_type"] == "detection":
            assert user == DETECTION
            objs = kept
        else:
            cat = GROUNDING_RE.match(user).group(1)
            objs = [o for o in kept if o["category"] == cat]
        lines = reply.split("\n")
        assert len(lines) == len(objs) > 0
        K = np.array(rec["K"])
        W, H = rec["width"], rec["height"]
        for i, (line, o) in enumerate(zip(lines, objs)):
            m = LINE_RE.fullmatch(line)
            assert m is not None, line
            assert int(m.group(1)) == i and m.group(2) == o["category"]
            toks = m.groups()[2:]
            assert _places(toks[0]) <= 3 and _places(toks[1]) <= 3 and all(_places(t) <= 4 for t in toks[2:])
            u, v, z, angle, sx, sy, sz = map(float, toks)
            b = o["box3d"]
            # centre via K: the normalised pixel-edge projection back through the intrinsics
            px, py = u * W - 0.5, v * H - 0.5
            centre = np.array([(px - K[0, 2]) / K[0, 0] * z, (py - K[1, 2]) / K[1, 1] * z, z])
            c = np.array(b["center_cam"])
            tol_z = 0.5e-4 + 1e-9
            assert abs(z - c[2]) <= tol_z
            # u, v to 3 places: half a unit of 1e-3 of the image, in metres at that depth
            tol_x = 0.5e-3 * W / K[0, 0] * z + abs(c[0] / c[2]) * tol_z + 1e-9
            tol_y = 0.5e-3 * H / K[1, 1] * z + abs(c[1] / c[2]) * tol_z + 1e-9
            assert abs(centre[0] - c[0]) <= tol_x and abs(centre[1] - c[1]) <= tol_y, (centre, c)
            assert np.all(np.abs(np.array([sx, sy, sz]) - np.array(b["dimensions"])) <= 0.5e-4 + 1e-9)
            yaw = Box3D.from_omni3d(b, rec["gravity_cam"]).yaw
            assert abs(wrap_angle(angle - yaw)) <= 0.5e-4 + 1e-9
            assert abs(wrap_angle(angle - b["yaw"])) <= 0.5e-4 + 1e-6  # the record's own yaw field
            n_boxes += 1
    assert n_boxes >= 20


def _nearest(n_out: int, n_in: int) -> np.ndarray:
    return np.minimum(np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(int), n_in - 1)


@pytest.mark.parametrize("which", ["export", "export_full"])
def test_point_maps_back_project_to_the_repository_depth(which):
    repo = _repository()
    export = getattr(build(), which)
    files = sorted(export.glob("points/*/*.npz"))
    assert len(files) == len(repo)
    for p in files:
        rec, depth = repo[p.stem]
        with np.load(p) as f:
            pcd, intr = f["pcd"], f["intr"]
        assert pcd.dtype == np.float16 and intr.dtype == np.float32 and pcd.ndim == 3 and pcd.shape[2] == 4
        H, W = depth.shape
        h, w = pcd.shape[:2]
        if which == "export":
            assert max(w, h) == 640 and h == math.floor(H * 640 / W + 0.5)  # 1242x375 -> 640x193
            d = depth[_nearest(h, H)[:, None], _nearest(w, W)[None, :]]
        else:
            assert (h, w) == (H, W)
            d = depth
        valid = d > 0
        assert np.array_equal(pcd[..., 3] == 1, valid) and np.all(pcd[..., 3][~valid] == 0)
        assert valid.mean() > 0.3
        z = pcd[..., 2].astype(np.float64)
        eps = 2.0 ** -11  # float16's relative rounding
        assert np.all(np.abs(z - d)[valid] <= eps * d[valid])
        assert np.all(pcd[..., :3][~valid] == 0)
        # x left, y up: the ray of each map pixel through the normalised intrinsics, negated
        fx, fy, cx, cy = intr[0, 0] * w, intr[1, 1] * h, intr[0, 2] * w, intr[1, 2] * h
        jj, ii = np.meshgrid(np.arange(w), np.arange(h))
        x_left, y_up = -(jj - cx) / fx * d, -(ii - cy) / fy * d
        x, y = pcd[..., 0].astype(np.float64), pcd[..., 1].astype(np.float64)
        assert np.all(np.abs(x - x_left)[valid] <= 2 * eps * np.abs(x_left[valid]) + 1e-6)
        assert np.all(np.abs(y - y_up)[valid] <= 2 * eps * np.abs(y_up[valid]) + 1e-6)
        # the normalised intrinsics are the record's K scaled to the map (pixel-edge convention)
        K = np.array(rec["K"])
        assert intr[0, 0] == pytest.approx(K[0, 0] / W, rel=1e-6) and intr[1, 1] == pytest.approx(K[1, 1] / H, rel=1e-6)
        assert intr[0, 2] * w + 0.5 == pytest.approx((K[0, 2] + 0.5) * w / W, rel=1e-6)
        assert intr[1, 2] * h + 0.5 == pytest.approx((K[1, 2] + 0.5) * h / H, rel=1e-6)


def test_rows_stages_and_accounting():
    b = build()
    qa_questions, n_samples = {}, 0
    for shard in sorted(b.qa.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    s = json.loads(tar.extractfile(m).read())
                    n_samples += 1
                    qa_questions.update({q["qid"]: q for q in s["questions"]})
    for export, share in ((b.export, 0.2), (b.export_full, 0.5)):
        stats = json.loads((export / "stats.json").read_text())
        assert stats["samples_in"] == stats["samples_exported"] == n_samples > 0
        assert stats["samples_skipped"] == 0 and stats["rows"] == len(qa_questions)
        rows = list(_rows(export))
        stage1 = [r for s, r in rows if s == "stage1"]
        stage2 = [r for s, r in rows if s == "stage2"]
        loc = {"detection", "grounding"}
        assert {r["question_type"] for r in stage1} == loc and stage1
        assert {r["id"] for r in stage1} == {q for q, v in qa_questions.items() if v["family"] in loc}
        reasoning = [r for r in stage2 if r["question_type"] not in loc]
        assert {r["id"] for r in reasoning} == {q for q, v in qa_questions.items() if v["family"] not in loc}
        n_loc = len(stage2) - len(reasoning)
        assert n_loc == min(len(stage1), round(share / (1 - share) * len(reasoning)))
        for _, r in rows:
            q = qa_questions[r["id"]]
            assert r["question_type"] == q["family"] and len(r["messages"]) == 2
            want = q["answer_text"] if not q["reasoning"] else f"<think>{q['reasoning']}</think> {q['answer_text']}"
            assert r["messages"][1] == {"role": "assistant", "content": want}
            assert r["messages"][0] == {"role": "user", "content": "<image>" + q["question"]}


def test_bad_samples_are_counted_by_reason(tmp_path):
    """A repository sample without its depth PNG is skipped as depth_missing, listed in
    errors.jsonl, and nothing of it is written; the others are exported."""
    b = build()
    repo = tmp_path / "repository"
    repo.mkdir()
    shards = sorted(b.repo.glob("shard-*.tar"))
    for shard in shards:
        (repo / shard.name).write_bytes(shard.read_bytes())
    with tarfile.open(shards[0]) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    victim = next(m.name for m, _ in members if m.name.endswith(".depth.png"))[: -len(".depth.png")]
    with tarfile.open(repo / shards[0].name, "w") as tar:
        for m, data in members:
            if m.name != f"{victim}.depth.png":
                tar.addfile(m, io.BytesIO(data))
    out = tmp_path / "exp"
    assert main(["export", "--format", "n3d-vlm", "--qa", str(b.qa), "--repository", str(repo), "--out", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["skipped_by_reason"] == {"depth_missing": 1}
    assert stats["samples_in"] == stats["samples_exported"] + 1
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["key"], e["reason"]) for e in errors] == [(victim, "depth_missing")]
    assert not list(out.glob(f"points/*/{victim}.npz")) and not list(out.glob(f"images/*/{victim}.jpg"))
    assert all(victim not in r["images"][0] for _, r in _rows(out))
    # a re-run resumes (every unit done): same stats
    assert main(["export", "--format", "n3d-vlm", "--qa", str(b.qa), "--repository", str(repo), "--out", str(out)]) == 0
    assert json.loads((out / "stats.json").read_text()) == stats


@pytest.mark.parametrize("argv, needle", [
    (["export", "--format", "n3d-vlm", "--qa", "/nope/qa", "--out", "/tmp/x"], "--qa folder not found: /nope/qa"),
    (["export", "--format", "n3d-vlm", "--qa", "QA", "--repository", "/nope/repo", "--out", "/tmp/x"],
     "repository folder not found: /nope/repo"),
    (["export", "--format", "n3d-vlm", "--qa", "QA", "--out", "/tmp/x", "--localisation-share", "1"],
     "--localisation-share must be in [0, 1)"),
])
def test_user_mistakes_are_one_line_errors(argv, needle, capsys):
    argv = [str(build().qa) if a == "QA" else a for a in argv]
    assert main(argv) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("lift3d export: error:") and needle in lines[0], lines


def test_wrong_format_and_default_style_qa_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # argparse: usage + one error line naming the choices
        main(["export", "--format", "llava", "--qa", str(build().qa), "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "invalid choice: 'llava'" in err
    qa = tmp_path / "qa"
    qa.mkdir()
    for p in build().qa.glob("shard-*.tar"):
        (qa / p.name).write_bytes(p.read_bytes())
    man = json.loads((build().qa / "manifest.json").read_text())
    man["config"]["qa_config"]["style"] = "lift3d"
    (qa / "manifest.json").write_text(json.dumps(man))
    assert main(["export", "--format", "n3d-vlm", "--qa", str(qa), "--repository", str(build().repo),
                 "--out", str(tmp_path / "y")]) == 2
    assert "needs `lift3d qa --style n3d`" in capsys.readouterr().err

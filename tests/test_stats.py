"""lift3d stats: the dataset card's numbers, tables and plots."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lifting.boxes import Box3D
from lifting.viz.card import DatasetStats
from test_viz_fixtures import kept_object, make_record, qa_sample, rejected_object, small_output


def test_stats_command_writes_card_with_counts_and_plots(tmp_path, capsys):
    from pipelines.cli import main

    out = small_output(tmp_path / "o")
    assert main(["stats", "--repository", str(out), "--title", "tiny"]) == 0
    printed = json.loads(capsys.readouterr().out)
    card = out / "card"
    assert printed == {"card": str(card / "README.md"), "images": 3, "objects": 6, "qa_questions": 3}
    s = json.loads((card / "stats.json").read_text())
    assert (s["images"], s["images_lifted"], s["images_rejected"], s["images_failed"]) == (3, 2, 1, 1)
    assert s["per_category"] == {"chair": {"kept": 1, "rejected": 2}, "sofa": {"kept": 1, "rejected": 0},
                                 "table": {"kept": 1, "rejected": 0}, "box": {"kept": 0, "rejected": 1}}
    assert s["per_qa_family"] == {"distance": 1, "size": 1, "count": 1}
    assert s["per_answer_form"] == {"numeric": 1, "choice": 1, "count": 1}
    assert s["rejection_reasons"] == {"too_few_points": 1, "proj_iou_low": 1, "depth_missing": 1}
    assert s["image_rejection_reasons"] == {"no_object_kept": 1}
    assert s["failure_reasons"] == {"image_missing": 1}
    # kept boxes of the fixture: chair z = 3, table z = 4, sofa z = 5; heights 0.9, 0.75, 0.8
    assert s["distributions"]["depth_m"]["median"] == pytest.approx(4.0)
    assert s["distributions"]["height_m"]["median"] == pytest.approx(0.8)
    assert s["distributions"]["points_per_object"]["median"] == pytest.approx(500)
    assert s["distributions"]["objects_per_image"]["mean"] == pytest.approx(1.0)  # 2 + 1 + 0 kept over 3 images
    md = (card / "README.md").read_text()
    assert md.startswith("# tiny: dataset card")
    assert "| chair | 1 | 2 | 33.3% |" in md
    assert "| distance | 1 | 33.3% |" in md
    assert "| object | too_few_points | 1 |" in md and "| failed input | image_missing | 1 |" in md
    for name in ("categories", "qa_families", "answer_forms", "depth", "size", "points_per_object", "proj_iou",
                 "rejections"):
        png = card / "plots" / f"{name}.png"
        assert f"](plots/{name}.png)" in md
        a = np.asarray(Image.open(png).convert("L"))
        assert a.shape[0] > 150 and a.std() > 10, name  # a drawn plot, not an empty canvas


def test_distributions_stream_many_records():
    st = DatasetStats()
    rng = np.random.default_rng(0)
    depths = rng.uniform(1, 20, 500)
    for i, z in enumerate(depths):
        b = Box3D.from_gravity([0, 0, z], [0.5, 1.0, 0.5], 0.0)
        st.add_record(make_record(f"k{i}", [kept_object(f"k{i}-0", "cup", b, None, quality={"n_points": i})]))
    st.add_record(make_record("r", [rejected_object("r-0", "cup", [0, 0, 3, 3], "too_small")], status="rejected",
                              reason="no_object_kept"))
    st.add_qa(qa_sample("k1", 0, [("distance", "numeric", "q", "a")] * 3))
    s = st.summary()
    d = s["distributions"]["depth_m"]
    assert d["count"] == 500
    assert d["median"] == pytest.approx(np.median(depths), rel=1e-5)
    assert d["p95"] == pytest.approx(np.percentile(depths, 95), rel=1e-5)
    assert s["distributions"]["points_per_object"]["p5"] == pytest.approx(np.percentile(np.arange(500), 5), rel=1e-4)
    assert s["per_category"]["cup"] == {"kept": 500, "rejected": 1}
    assert (s["qa_samples"], s["qa_questions"], s["per_qa_family"]) == (1, 3, {"distance": 3})


def test_card_of_an_empty_qa_and_no_kept_objects(tmp_path):
    st = DatasetStats()
    st.add_record(make_record("r", [rejected_object("r-0", "cup", [0, 0, 3, 3], "too_small")], status="rejected",
                              reason="no_object_kept"))
    readme = st.write_card(tmp_path)
    md = readme.read_text()
    assert "No QA shards were found" in md
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["categories.png", "rejections.png"]

"""Benchmark builder and scorer (numeric within +-25%, choices exactly), and `lift3d score`."""
from __future__ import annotations

import collections
import json

import pytest

from lifting.qa import QAConfig, build_benchmark, score
from lifting.qa.benchmark import grade, is_held_out, parse_number, write_benchmark
from pipelines.cli import main
from test_qa_scenes import random_record

RECORDS = [random_record(100 + s, n_objects=4 + s % 5) for s in range(80)]


@pytest.fixture(scope="module")
def bench():
    return build_benchmark(RECORDS, 150, QAConfig(seed=3))


def test_benchmark_is_balanced_deterministic_and_box_free(bench):
    assert len(bench) == 150
    assert len({it["qid"] for it in bench}) == 150
    assert all(it["form"] != "boxes" and it["prompt"].startswith("<image>\n") for it in bench)
    counts = collections.Counter(it["family"] for it in bench)
    assert len(counts) == 10 and max(counts.values()) - min(counts.values()) <= 1
    assert json.dumps(bench) == json.dumps(build_benchmark(RECORDS, 150, QAConfig(seed=3)))
    assert {it["form"] for it in bench} >= {"numeric", "open", "choice", "count", "yes_no"}


def test_ground_truth_answers_score_perfectly_and_reasoning_prefix_is_ignored(bench):
    preds = {it["qid"]: "Let me think.\nSome 3D reasoning with 9.99 m and left.\n" + it["answer_text"] for it in bench}
    res = score(bench, preds)
    assert res["accuracy"] == 1.0 and res["answered"] == 150
    assert all(v["accuracy"] == 1.0 for v in res["per_family"].values())


def test_wrong_and_missing_answers_score_zero(bench):
    preds = {}
    for it in bench:
        v = it["answer"]["value"]
        if it["form"] == "numeric":
            preds[it["qid"]] = f"{v * 1.3 + 0.01:.2f} {it['answer']['unit']}"
        elif it["form"] == "yes_no":
            preds[it["qid"]] = "No" if v else "Yes"
        elif it["form"] in ("count",) or it["answer"]["unit"] == "o'clock":
            preds[it["qid"]] = str(v % 12 + 1)
        elif it["form"] == "choice":
            other = [t for o, t in zip(it["params"]["options"], it["params"]["options_text"]) if o != v][0]
            preds[it["qid"]] = other.replace("_", " ")
        # open answers (orders, nearest objects) left missing: they count as wrong
    res = score(bench, preds)
    assert res["correct"] == 0 and res["answered"] < res["n"]


def test_numeric_tolerance_is_25_percent_with_unit_conversion():
    item = {"form": "numeric", "answer": {"value": 2.0, "unit": "m"}, "params": {}}
    assert grade(item, "2.49 m") and grade(item, "about 1.51 metres") and grade(item, "160 cm")
    assert not grade(item, "2.6 m") and not grade(item, "1.4") and not grade(item, "no idea")
    assert parse_number("6 ft", "m") == pytest.approx(1.8288)
    assert grade({"form": "numeric", "answer": {"value": 10.0, "unit": "ft"}, "params": {}}, "3 m")


def test_held_out_split_is_a_function_of_the_key():
    keys = [f"coco_{i}" for i in range(4000)]
    held = [k for k in keys if is_held_out(k, seed=0, fraction=0.05)]
    assert 120 < len(held) < 280 and held == [k for k in keys if is_held_out(k, seed=0, fraction=0.05)]


def test_score_command(tmp_path, bench, capsys):
    bpath = tmp_path / "bench.jsonl"
    write_benchmark(bench, bpath)
    ppath = tmp_path / "preds.jsonl"
    ppath.write_text("".join(json.dumps({"qid": it["qid"], "prediction": it["answer_text"]}) + "\n"
                             for it in bench[:75]))
    out = tmp_path / "metrics.json"
    assert main(["score", "--benchmark", str(bpath), "--predictions", str(ppath), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["n"] == 150 and printed["correct"] == 75 and printed["answered"] == 75
    assert main(["score", "--benchmark", str(tmp_path / "missing.jsonl"), "--predictions", str(ppath)]) == 2


def test_n3d_style_benchmark_and_replies_score_like_the_default():
    """A benchmark built in N3D-VLM's style, answered N3D-style ("<think>...</think> That is
    True.") and lift3d-style, scores the same; flipped binary answers score zero."""
    n3d = build_benchmark(RECORDS, 150, QAConfig(seed=3, style="n3d"))
    assert all(it["prompt"].startswith("<image>") and not it["prompt"].startswith("<image>\n") for it in n3d)
    binary = [it for it in n3d if it["form"] == "yes_no"]
    assert binary and {it["answer_text"] for it in binary} == {"That is True.", "That is False."}
    think = {it["qid"]: f"<think>1. The 3D center coordinate of x is [0.1, 0.2, 3.0].\n2. Left.</think> "
                        f"{it['answer_text']}" for it in n3d}
    assert score(n3d, think)["accuracy"] == 1.0
    flipped = {it["qid"]: "<think>Yes, yes.</think> " + ("That is False." if it["answer"]["value"] else "That is True.")
               for it in binary}
    assert score(binary, flipped)["correct"] == 0
    # the default style's answers to the same questions (same seed: same values) score alike
    plain = {it["qid"]: ("Yes" if it["answer"]["value"] else "No") for it in binary}
    assert score(binary, plain)["accuracy"] == 1.0

"""The n3d QA style: N3D-VLM's prompts, numbered box lines, <think> traces with centres in
x left / y up / z forward, and its binary answers (qa_templates/n3d/)."""
from __future__ import annotations

import re

import numpy as np

from lifting.bbox_text import N3D_PRECISION, find_bboxes, format_bbox
from lifting.boxes import Box3D
from lifting.qa import QAConfig, generate_qa
from lifting.resources import validation_error
from test_qa_scenes import random_record

RECORDS = [random_record(200 + s, n_objects=2 + s % 7) for s in range(50)]
CFG = QAConfig(seed=5, style="n3d", max_questions=40, max_per_family=4)
SAMPLES = [(r, generate_qa(r, CFG)) for r in RECORDS]
CENTRE_RE = re.compile(r"The 3D center coordinate of (.+?) is \[(-?[\d.]+), (-?[\d.]+), (-?[\d.]+)\]")


def test_prompts_and_box_lines_are_the_releases():
    seen = set()
    for rec, s in SAMPLES:
        assert validation_error(s, "qa_sample") is None and s["style"] == "n3d"
        assert s["messages"][0]["role"] == "user" and s["messages"][0]["content"].startswith("<image>")
        assert not s["messages"][0]["content"].startswith("<image>\n")
        K = np.array(rec["K"])
        kept = [o for o in rec["objects"] if o["status"] == "kept"]
        for q in s["questions"]:
            if q["family"] == "grounding":
                cat = q["params"]["category"]
                assert q["question"] == (f"Identify the 3D boxes for all the '{cat}' in this scene. "
                                         "The reference code is as followed: <code_template>")
            elif q["family"] == "detection":
                assert q["question"] == "Detect boxes. The reference code is as followed: <code_template>"
            else:
                continue
            seen.add(q["family"])
            lines = q["answer_text"].split("\n")
            objs = [o for o in kept if o["object_id"] in q["object_ids"]]
            assert len(lines) == len(objs) and not q["reasoning"]
            for i, (line, o) in enumerate(zip(lines, objs)):
                b = o["box3d"]
                box = Box3D.from_omni3d(b, rec["gravity_cam"])
                want = format_bbox(o["category"], box, K, (rec["width"], rec["height"]), N3D_PRECISION)
                assert line == f"bbox_{i}={want}"
                assert re.fullmatch(r"bbox_\d+=Bbox\([^,]+,-?\d+\.\d{1,3},-?\d+\.\d{1,3},[-\d.]+,[-\d.]+,[\d.]+,[\d.]+,[\d.]+\)",
                                    line), line
            assert [t.category for t in find_bboxes(q["answer_text"])] == [o["category"] for o in objs]
    assert seen == {"detection", "grounding"}


def test_traces_state_centres_left_up_forward_and_binary_answers_are_true_false():
    n_centres = n_binary = 0
    for rec, s in SAMPLES:
        by_ref = {}
        for q in s["questions"]:
            for oid, r in q["params"].get("referring", {}).items():
                by_ref[r["text"]] = oid
        centres = {o["object_id"]: o["box3d"]["center_cam"] for o in rec["objects"] if o["status"] == "kept"}
        replies = [m["content"] for m in s["messages"] if m["role"] == "assistant"]
        for q, reply in zip(s["questions"], replies):
            if q["reasoning"]:
                assert reply == f"<think>{q['reasoning']}</think> {q['answer_text']}"
            for name, x, y, z in CENTRE_RE.findall(q["reasoning"] or ""):
                c = centres[by_ref[name]]
                # x left, y up, z forward: the camera frame (x right, y down) with x and y negated
                assert [float(x), float(y), float(z)] == [round(-c[0], 2) + 0.0, round(-c[1], 2) + 0.0,
                                                          round(c[2], 2)], (name, c)
                n_centres += 1
            if q["form"] == "yes_no":
                n_binary += 1
                assert q["answer_text"] == ("That is True." if q["answer"]["value"] else "That is False.")
                assert "yes or no" not in q["question"].lower()
    assert n_centres > 100 and n_binary > 10


def test_default_style_is_unchanged():
    s = generate_qa(RECORDS[0], QAConfig(seed=5))
    assert s["style"] == "lift3d" and s["messages"][0]["role"] == "system"
    assert s["messages"][1]["content"].startswith("<image>\n")
    assert all("bbox_" not in m["content"] and "<think>" not in m["content"] for m in s["messages"])

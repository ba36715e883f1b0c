"""QA engine: schema, determinism, caps, mix, units, referring, rejected objects, formats."""
from __future__ import annotations

import json
import random

import pytest

from lifting.qa import QAConfig, assemble_conversation, generate_qa, to_sharegpt
from lifting.qa.formats import sharegpt_dataset_info, write_sharegpt
from lifting.resources import validation_error
from test_qa_scenes import make_object, make_record, random_record

RECORDS = [random_record(s, n_objects=2 + s % 8, n_rejected=s % 3) for s in range(60)]


def test_samples_are_valid_and_never_mention_rejected_objects():
    cfg = QAConfig(seed=1)
    for rec in RECORDS:
        s = generate_qa(rec, cfg)
        assert validation_error(s, "qa_sample") is None
        rejected = {o["object_id"] for o in rec["objects"] if o["status"] != "kept"}
        kept_cats = {o["category"] for o in rec["objects"] if o["status"] == "kept"}
        for q in s["questions"]:
            assert not rejected & set(q["object_ids"])
            assert not rejected & set(q["params"]["referring"])
            if q["family"] == "grounding":
                assert q["params"]["category"] in kept_cats
        assert s["conversations"][0]["value"].startswith("<image>\n")
        assert sum(c["value"].count("<image>") for c in s["conversations"]) == 1
        assert [m["role"] for m in s["messages"]][:2] == ["system", "user"]
        assert len(s["conversations"]) == 2 * len(s["questions"])


def test_no_kept_object_gives_none():
    rec = random_record(3, n_objects=0, n_rejected=2)
    assert generate_qa(rec, QAConfig()) is None


def test_seeded_by_run_seed_and_key_only():
    cfg = QAConfig(seed=5)
    a = {r["key"]: generate_qa(r, cfg) for r in RECORDS}
    shuffled = RECORDS[:]
    random.Random(0).shuffle(shuffled)
    # two "workers" each processing half, in another order, after other work in the process
    generate_qa(random_record(999), QAConfig(seed=77))
    b = {r["key"]: generate_qa(r, cfg) for r in shuffled[::2]}
    b.update({r["key"]: generate_qa(r, cfg) for r in shuffled[1::2]})
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    c = {r["key"]: generate_qa(r, QAConfig(seed=6)) for r in RECORDS}
    assert json.dumps(a, sort_keys=True) != json.dumps(c, sort_keys=True)


def test_caps_and_family_mix():
    cfg = QAConfig(max_per_family=1, max_questions=5)
    for rec in RECORDS:
        qs = generate_qa(rec, cfg)["questions"]
        fams = [q["family"] for q in qs]
        assert len(qs) <= 5 and len(fams) == len(set(fams))
    only = QAConfig(families={"metric_object": 1.0, "relation_size": 0.0}, max_per_family=3)
    for rec in RECORDS:
        s = generate_qa(rec, only)
        assert {q["family"] for q in s["questions"]} == {"metric_object"}
    # the mix weights shift the share of families when the question budget binds
    heavy = QAConfig(families={"metric_object": 10.0, "metric_distance": 1.0}, max_per_family=4, max_questions=3)
    counts = {"metric_object": 0, "metric_distance": 0}
    for rec in RECORDS:
        for q in generate_qa(rec, heavy)["questions"]:
            counts[q["family"]] += 1
    assert counts["metric_object"] > 1.5 * counts["metric_distance"]


def test_unknown_family_and_units_are_rejected():
    with pytest.raises(ValueError):
        QAConfig(families={"nonsense": 1.0})
    with pytest.raises(ValueError):
        QAConfig(units="furlongs")


def test_imperial_numbers_are_feet_and_stated_once():
    rec = RECORDS[10]
    fams = {"metric_object": 1.0, "metric_distance": 1.0}
    m = generate_qa(rec, QAConfig(families=fams, max_per_family=3, units="metric"))
    i = generate_qa(rec, QAConfig(families=fams, max_per_family=3, units="imperial"))
    for qm, qi in zip(m["questions"], i["questions"]):
        assert qm["params"] == {**qi["params"], "units": "metric"}  # same sampling, other unit
        assert qm["answer"]["unit"] == "m" and qi["answer"]["unit"] == "ft"
        assert qi["answer"]["value"] == pytest.approx(qm["answer"]["value"] * 3.2808399, abs=0.025)  # both rounded to 0.01
        assert qi["answer_text"].endswith(" ft")
    first = i["conversations"][0]["value"]
    assert "in feet, rounded to 2 decimals" in first
    assert sum("rounded to" in c["value"] for c in i["conversations"]) == 1


def test_referring_uses_disambiguators_for_repeated_categories():
    g = [0.0, 1.0, 0.0]
    objs = [make_object("c1", "chair", [-1.0, 1.0, 3.0], [0.5, 0.9, 0.5], 0.0, g),
            make_object("c2", "chair", [0.0, 1.0, 3.05], [0.5, 0.9, 0.5], 0.0, g),  # middle: not referable
            make_object("c3", "chair", [1.0, 1.0, 6.0], [0.5, 0.9, 0.5], 0.0, g),
            make_object("t", "table", [0.0, 1.1, 4.5], [1.2, 0.7, 0.8], 0.0, g)]
    rec = make_record("chairs", objs)
    texts = {}
    for seed in range(30):
        s = generate_qa(rec, QAConfig(seed=seed, max_questions=12, max_per_family=3))
        for q in s["questions"]:
            assert "c2" not in q["params"]["referring"]
            for oid, r in q["params"]["referring"].items():
                texts.setdefault(oid, set()).add(r["text"])
            if q["family"] not in ("detection", "grounding", "multi_count", "multi_extreme"):
                assert "c2" not in q["object_ids"]
    assert texts["t"] == {"the table"}
    assert texts["c1"] <= {"the leftmost chair", "the nearest chair"}
    assert texts["c3"] <= {"the rightmost chair", "the farthest chair"}


def test_assemble_conversation_rebuilds_after_rephrasing():
    s = generate_qa(RECORDS[5], QAConfig())
    s["questions"][1]["question"] = "REPHRASED QUESTION?"
    s["questions"][1]["reasoning"] = "NEW REASONING"
    assemble_conversation(s)
    assert s["conversations"][2]["value"] == "REPHRASED QUESTION?"
    assert s["conversations"][3]["value"] == "NEW REASONING\n" + s["questions"][1]["answer_text"]
    assert s["messages"][3] == {"role": "user", "content": "REPHRASED QUESTION?"}
    assert validation_error(s, "qa_sample") is None


def test_cot_off_gives_answer_only():
    s = generate_qa(RECORDS[7], QAConfig(cot=False))
    for q, turn in zip(s["questions"], s["conversations"][1::2]):
        assert q["reasoning"] is None and turn["value"] == q["answer_text"]


def test_reasoning_grounds_every_referenced_object_first():
    s = generate_qa(RECORDS[9], QAConfig(max_questions=14, max_per_family=2))
    for q in s["questions"]:
        if q["form"] == "boxes" or not q["params"]["referring"]:
            continue
        first = q["reasoning"].splitlines()[0]
        assert "Bbox(" in first


def test_sharegpt_export(tmp_path):
    samples = [generate_qa(r, QAConfig()) for r in RECORDS[:5]]
    out = to_sharegpt(samples, "/data/qa")
    assert len(out) == 5
    for s, item in zip(samples, out):
        assert item["images"] == [f"/data/qa/{s['image_key']}.jpg"]
        assert item["conversations"][0]["from"] == "human" and item["conversations"][1]["from"] == "gpt"
        assert sum(t["value"].count("<image>") for t in item["conversations"]) == len(item["images"])
        assert item["system"] == s["system_prompt"]
    path = write_sharegpt(samples, "imgs", tmp_path, name="n3d")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info == sharegpt_dataset_info("n3d", "n3d.json")
    assert json.loads(path.read_text()) == to_sharegpt(samples, "imgs")

"""`lift3d priors`: category sizes from a scripted OpenAI-compatible server on 127.0.0.1,
validated, cached, and written in the format lifting/priors.py reads."""
from __future__ import annotations

import json
import re

import pytest

from lifting.llm.config import LLMConfig
from lifting.llm.loopback_server import LoopbackChatServer, Reply, chat_reply
from lifting.llm.size_priors import build_priors, read_categories, validate_answer
from lifting.priors import SizePriors

#: What the scripted "LLM" answers per category (metres unless the test says otherwise).
ANSWERS = {
    "chair": {"category": "chair", "dims": [0.5, 0.9, 0.55], "min": [0.35, 0.6, 0.35], "max": [0.8, 1.3, 0.8]},
    "fire hydrant": {"dims": {"w": 0.4, "h": 0.8, "l": 0.3}, "min": {"w": 0.25, "h": 0.5, "l": 0.2},
                     "max": {"w": 0.6, "h": 1.2, "l": 0.5}},
    "banana": "```json\n" + json.dumps({"category": "banana", "typical": [0.2, 0.04, 0.04],
                                         "min": [0.12, 0.025, 0.025], "max": [0.3, 0.06, 0.06]}) + "\n```",
    "bus": {"category": "bus", "dims": [1200, 300, 250], "min": [800, 280, 230], "max": [1800, 400, 260]},  # cm
    "cup": {"category": "cup", "dims": [0.08, 0.1, 0.08], "min": [0.1, 0.15, 0.1], "max": [0.12, 0.2, 0.12]},
    "kite": {"category": "kite", "dims": [1.0, -0.1, 0.8], "min": [0.5, 0.01, 0.3], "max": [2, 0.3, 1.5]},
    "toaster": {"category": "airplane", "dims": [30, 10, 30], "min": [20, 5, 20], "max": [70, 20, 70]},
    "vase": "I think a vase is about 30 cm tall.",
}


def responder(req, seq):
    cat = json.loads(re.search(r"Category: (.*)", req["messages"][-1]["content"]).group(1))
    if cat == "broken":
        return Reply(status=500, kind="e500")
    a = ANSWERS[cat]
    return chat_reply(a if isinstance(a, str) else json.dumps(a), seq=seq)


@pytest.fixture(scope="module")
def server():
    with LoopbackChatServer(responder) as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.responder = responder
    server.reset_counters()
    return server


def test_validation_reasons():
    assert validate_answer("chair", ANSWERS["chair"]) == {"dims": [0.55, 0.9, 0.5], "min": [0.35, 0.6, 0.35],
                                                         "max": [0.8, 1.3, 0.8]}  # w >= l convention
    assert validate_answer("bus", ANSWERS["bus"]) == "prior_out_of_range"
    assert validate_answer("cup", ANSWERS["cup"]) == "prior_inconsistent_range"
    assert validate_answer("kite", ANSWERS["kite"]) == "prior_nonpositive"
    assert validate_answer("toaster", ANSWERS["toaster"]) == "prior_wrong_category"
    assert validate_answer("vase", None) == "prior_malformed"
    assert validate_answer("vase", {"dims": [0.2, 0.3]}) == "prior_malformed"
    assert validate_answer("chairs", dict(ANSWERS["chair"])) != "prior_wrong_category"  # plural is the same thing


def test_build_priors_keeps_valid_and_reports_the_rest(srv, tmp_path):
    cats = list(ANSWERS) + ["broken"]
    cfg = LLMConfig(base_url=srv.url, model="sizes-llm", temperature=0.0, max_retries=1, backoff_base_s=0.001,
                    cache_path=str(tmp_path / "c.sqlite"))
    res = build_priors(cats, cfg)
    assert sorted(res.categories) == ["banana", "chair", "fire hydrant"]
    assert res.rejected == {"bus": "prior_out_of_range", "cup": "prior_inconsistent_range", "kite": "prior_nonpositive",
                            "toaster": "prior_wrong_category", "vase": "prior_malformed", "broken": "budget_exhausted"}
    assert res.categories["fire hydrant"] == {"dims": [0.4, 0.8, 0.3], "min": [0.25, 0.5, 0.2], "max": [0.6, 1.2, 0.5],
                                              "source": "llm:sizes-llm"}
    assert res.stats["requests"] == len(ANSWERS) + 2 and srv.bodies[0]["temperature"] == 0.0
    # second run: every answered category comes from the cache; only the failed one is asked again
    srv.reset_counters()
    res2 = build_priors(cats, cfg)
    assert res2.categories == res.categories and srv.requests == 2  # "broken": 1 try + 1 retry
    assert res2.stats["cache_hits"] == len(ANSWERS)


def test_cli_writes_a_file_the_lifting_core_reads(srv, tmp_path, capsys):
    from pipelines.cli import main

    cats = tmp_path / "cats.txt"
    cats.write_text("# my vocabulary\nChair\nfire_hydrant\n\nbanana  # fruit\nbus\nchair\n")
    out = tmp_path / "priors.json"
    rc = main(["priors", "--categories", str(cats), "--out", str(out), "--llm-base-url", srv.url,
               "--llm-model", "sizes-llm", "--llm-retries", "0"])
    assert rc == 1  # "bus" was rejected; the others are written
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 3 and summary["rejected_categories"] == {"bus": "prior_out_of_range"}
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1 and sorted(doc["categories"]) == ["banana", "chair", "fire hydrant"]
    priors = SizePriors.load(extra_files=[out])
    p = priors.get("fire hydrant")
    assert p.source == "llm:sizes-llm" and p.dims == (0.4, 0.8, 0.3) and p.max == (0.6, 1.2, 0.5)
    assert not priors.skipped
    assert (tmp_path / "priors.json.llm_cache.sqlite").is_file()
    # re-run with --merge: nothing asked again except the rejected one, file unchanged
    srv.reset_counters()
    rc = main(["priors", "--categories", str(cats), "--out", str(out), "--llm-base-url", srv.url,
               "--llm-model", "sizes-llm", "--llm-retries", "0", "--merge"])
    assert rc == 1 and srv.requests == 0  # a rejected answer was a paid answer: cached too
    assert json.loads(out.read_text()) == doc


def test_cli_user_errors(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["priors", "--categories", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "p.json"),
                 "--llm-model", "m"]) == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert main(["priors", "--categories", str(empty), "--out", str(tmp_path / "p.json"), "--llm-model", "m"]) == 2
    assert "error" in capsys.readouterr().err


def test_read_categories_formats(tmp_path):
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"categories": [{"id": 1, "name": "Traffic Light"}, {"id": 2, "name": "traffic_light"},
                                               {"id": 3, "name": "dog"}]}))
    assert read_categories(coco) == ["traffic light", "dog"]
    lst = tmp_path / "l.json"
    lst.write_text(json.dumps(["Cell Phone", "cup"]))
    assert read_categories(lst) == ["cell phone", "cup"]

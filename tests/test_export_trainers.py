"""The output loads through the trainers' own loaders: Hugging Face `datasets` (the export's
JSON Lines as LLaMA-Factory loads them, and the QA shards with its webdataset builder),
`webdataset` and `wids` streaming; every image path and point map resolves.

LLaMA-Factory itself is not installed here (it pins its own torch/transformers stack): its
sharegpt rules (src/llamafactory/data/parser.py and converter.py: dataset_info entry, role
tags alternating user/assistant after an optional system turn, an even number of turns, one
`<image>` token per image, media paths relative to the dataset folder) are checked on the
rows that `datasets` loaded, which is what its loader hands the converter.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lifting.pointmap import map_size
from n3d_export_helpers import build


def _check_sharegpt_row(row: dict, entry: dict, root: Path) -> None:
    cols, tags = entry["columns"], entry["tags"]
    msgs = row[cols["messages"]]
    if msgs and msgs[0][tags["role_tag"]] == tags["system_tag"]:
        msgs = msgs[1:]
    assert msgs and len(msgs) % 2 == 0
    for i, m in enumerate(msgs):
        assert m[tags["role_tag"]] == (tags["user_tag"] if i % 2 == 0 else tags["assistant_tag"])
        assert isinstance(m[tags["content_tag"]], str) and m[tags["content_tag"]]
    images = row[cols["images"]]
    assert sum(m[tags["content_tag"]].count("<image>") for m in msgs) == len(images) == 1
    points = row[cols["points"]]
    assert len(points) == len(images)
    img = root / images[0]
    assert img.is_file() and not Path(images[0]).is_absolute()
    with Image.open(img) as im:
        W, H = im.size
    with np.load(root / points[0]) as z:
        assert z["pcd"].dtype == np.float16 and z["pcd"].shape == (*map_size(W, H, 640)[::-1], 4)
        assert z["intr"].dtype == np.float32 and z["intr"].shape == (3, 3)


def test_llamafactory_sharegpt_rows_load_with_datasets_json():
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is not installed (pip install datasets)")
    root = build().export
    info = json.loads((root / "dataset_info.json").read_text())
    assert set(info) == {"lift3d_n3d_stage1", "lift3d_n3d_stage2"}
    n_rows = 0
    for name, entry in info.items():
        assert entry["formatting"] == "sharegpt"
        folder = root / entry["file_name"]
        files = sorted(str(p) for p in folder.iterdir())
        assert files and all(f.endswith(".jsonl") for f in files)  # LLaMA-Factory: one extension per folder
        ds = datasets.load_dataset("json", data_files=files, split="train")
        assert set(ds.column_names) >= {"messages", "images", "points", "question_type"}
        for row in ds:
            _check_sharegpt_row(row, entry, root)
            n_rows += 1
        stream = datasets.load_dataset("json", data_files=files, split="train", streaming=True)
        assert sum(1 for _ in stream) == len(ds)
    stats = json.loads((root / "stats.json").read_text())
    assert n_rows == sum(stats["rows_by_stage"].values())


def _qa_manifest():
    return json.loads((build().qa / "manifest.json").read_text())


def test_qa_shards_load_with_datasets_webdataset():
    """With lift3d's features (lifting.qa.formats.qa_shard_features): without them the
    builder's schema inference fails on answer values whose type differs by family."""
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is not installed (pip install datasets)")
    from lifting.qa.formats import qa_shard_features

    shards = sorted(str(p) for p in build().qa.glob("shard-*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train",
                               features=qa_shard_features())
    assert len(ds) == _qa_manifest()["totals"]["samples"]
    for s in ds:
        qa = s["json"]
        assert s["jpg"].size == (qa["width"], qa["height"])
        # the LLaVA and OpenAI forms that the QA shards carry
        assert [c["from"] for c in qa["conversations"]][:2] == ["human", "gpt"]
        assert qa["messages"][0]["content"].startswith("<image>")
        assert len(qa["conversations"]) == 2 * sum(m["role"] == "user" for m in qa["messages"])


def test_qa_shards_stream_with_webdataset_and_wids():
    wds = pytest.importorskip("webdataset", reason="webdataset is not installed (pip install webdataset)")
    shards = sorted(str(p) for p in build().qa.glob("shard-*.tar"))
    n = 0
    for s in wds.WebDataset(shards, shardshuffle=False).decode("pil"):
        assert s["jpg"].size == (s["json"]["width"], s["json"]["height"])
        n += 1
    man = _qa_manifest()
    assert n == man["totals"]["samples"]
    wids = pytest.importorskip("wids", reason="wids is not installed (pip install wids)")
    shardlist = [{"url": str(build().qa / s["name"]), "nsamples": s["samples"]} for s in man["shards"]]
    ds = wids.ShardListDataset(shardlist)
    assert len(ds) == n
    for i in range(len(ds)):
        s = ds[i]  # wids' default decoding: .json to a dict, .jpg to a PIL image
        qa, img = s[".json"], s[".jpg"]
        assert isinstance(qa, dict) and img.size == (qa["width"], qa["height"])

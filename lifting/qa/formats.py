"""Exporters of QA samples to training-framework formats.

LLaMA-Factory (the framework N3D-VLM trains with) reads ShareGPT-style JSON: a list of
{"conversations": [{"from": "human"|"gpt", "value": ...}], "images": [path], "system": ...}
with one `<image>` token per image, described by an entry of its `dataset_info.json`.
"""
from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Iterable


def to_sharegpt(samples: Iterable[dict], image_root: str, image_ext: str = "jpg") -> list[dict]:
    """LLaMA-Factory ShareGPT records of QA samples.

    Args:
        samples: QA sample dicts (schemas/qa_sample.schema.json).
        image_root: folder (or URL prefix) holding the images as `<image_key>.<image_ext>`
            (the QA shards' KEY.jpg members, extracted).
    Returns:
        one dict per sample with `conversations`, `images` and (when the sample has a
        system prompt) `system`.
    """
    out = []
    for s in samples:
        item = {
            "conversations": [{"from": c["from"], "value": c["value"]} for c in s["conversations"]],
            "images": [posixpath.join(str(image_root), f"{s['image_key']}.{image_ext}")],
        }
        if s.get("system_prompt"):
            item["system"] = s["system_prompt"]
        out.append(item)
    return out


def sharegpt_dataset_info(name: str, file_name: str) -> dict:
    """The LLaMA-Factory `dataset_info.json` entry describing a `to_sharegpt` file."""
    return {
        name: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "images": "images", "system": "system"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
    }


def write_sharegpt(samples: Iterable[dict], image_root: str, out_dir: str | Path, name: str = "lift3d_qa") -> Path:
    """Write `<out_dir>/<name>.json` and `<out_dir>/dataset_info.json`; returns the data file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"{name}.json"
    data.write_text(json.dumps(to_sharegpt(samples, image_root), ensure_ascii=False, indent=1))
    (out_dir / "dataset_info.json").write_text(json.dumps(sharegpt_dataset_info(name, data.name), indent=2))
    return data


def qa_shard_features():
    """Hugging Face `datasets` Features for reading the QA shards with its webdataset builder:

        load_dataset("webdataset", data_files={"train": shards}, features=qa_shard_features())

    The builder infers a schema from the first samples otherwise, and a QA sample's answer
    values and params differ in type between question families (a bool, a list of ids, a
    number), which Arrow cannot hold in one column. These features keep what a trainer reads:
    the image and the sample's key, size and both conversation forms (LLaVA `conversations`,
    OpenAI `messages`); the full sample stays in the shard for other readers.
    """
    from datasets import Features, Image, Value

    return Features({
        "__key__": Value("string"), "__url__": Value("string"), "jpg": Image(),
        "json": {"key": Value("string"), "width": Value("int64"), "height": Value("int64"),
                 "conversations": [{"from": Value("string"), "value": Value("string")}],
                 "messages": [{"role": Value("string"), "content": Value("string")}]},
    })

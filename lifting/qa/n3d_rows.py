"""N3D-VLM training rows (LLaMA-Factory sharegpt) of QA samples written in the n3d style.

One row per question, single-turn, as the release's trainer reads it:

    {"id": qid, "messages": [{"role": "user", "content": "<image>Detect boxes. ..."},
                             {"role": "assistant", "content": "bbox_0=Bbox(...)"}],
     "images": ["images/000000/KEY.jpg"], "points": ["points/000000/KEY.npz"],
     "question_type": family}

Paths are relative to the export folder (LLaMA-Factory's `dataset_dir`, where its
`dataset_info.json` is; its `media_dir` defaults to it). Two training stages:
stage 1 localisation (detection + grounding rows); stage 2 spatial reasoning (every other
family) mixed with a share of the localisation rows (`localisation_share` of the stage-2
rows, drawn by a hash of the question id, so the choice is the same on every run).
"""
from __future__ import annotations

import hashlib

from lifting.qa.engine import assistant_text, first_user_text

LOCALISATION_FAMILIES = frozenset({"detection", "grounding"})
STAGES = ("stage1", "stage2")

#: LLaMA-Factory's description of the rows (the `columns`/`tags` of a sharegpt dataset whose
#: turns are OpenAI-style role/content messages); `points` is the N3D-VLM trainer's column.
SHAREGPT_COLUMNS = {"messages": "messages", "images": "images", "points": "points"}
SHAREGPT_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"}


def question_row(sample: dict, question: dict, image: str, points: str) -> dict:
    """The training row of one question of an n3d-style QA sample (see module docstring).

    Args:
        sample: QA sample dict (schemas/qa_sample.schema.json), style "n3d".
        question: one of sample["questions"].
        image, points: the image and point-map paths, relative to the export folder.
    """
    style = sample.get("style") or "lift3d"
    msgs = []
    if sample.get("system_prompt"):
        msgs.append({"role": "system", "content": sample["system_prompt"]})
    msgs.append({"role": "user", "content": first_user_text(question["question"], None, style)})
    msgs.append({"role": "assistant", "content": assistant_text(question, style)})
    return {"id": question["qid"], "messages": msgs, "images": [image], "points": [points],
            "question_type": question["family"]}


def _draw_key(qid: str) -> bytes:
    return hashlib.blake2b(qid.encode(), digest_size=8).digest()


def split_stages(rows: list[dict], localisation_share: float) -> dict[str, list[dict]]:
    """{'stage1': localisation rows, 'stage2': reasoning rows + a share of localisation rows}.

    localisation_share: fraction in [0, 1) of the stage-2 rows that are localisation rows:
    round(share / (1 - share) * reasoning rows) of them (at most all), the ones with the
    smallest hash of their id. Row order is kept.
    """
    if not 0.0 <= localisation_share < 1.0:
        raise ValueError(f"localisation_share must be in [0, 1), got {localisation_share}")
    loc = [r for r in rows if r["question_type"] in LOCALISATION_FAMILIES]
    reasoning = [r for r in rows if r["question_type"] not in LOCALISATION_FAMILIES]
    n = min(len(loc), int(round(localisation_share / (1.0 - localisation_share) * len(reasoning))))
    chosen = {id(r) for r in sorted(loc, key=lambda r: _draw_key(r["id"]))[:n]}
    return {"stage1": loc, "stage2": [r for r in rows if r["question_type"] not in LOCALISATION_FAMILIES
                                      or id(r) in chosen]}


def dataset_info(prefix: str = "lift3d_n3d") -> dict:
    """LLaMA-Factory `dataset_info.json`: one sharegpt entry per stage, each a folder of JSONL
    shards (`file_name` may name a folder; every file in it is read)."""
    return {f"{prefix}_{stage}": {"file_name": stage, "formatting": "sharegpt", "columns": dict(SHAREGPT_COLUMNS),
                                  "tags": dict(SHAREGPT_TAGS)} for stage in STAGES}

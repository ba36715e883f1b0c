"""Stream image records, QA samples and rejects out of a lift3d output folder.

Layout (DESIGN.md "Outputs"):
    OUT/repository/shard-NNNNNN.tar   KEY.json image record, KEY.jpg, KEY.depth.png (opt.)
    OUT/repository/rejected/, errors/ rejects and failures: *.tar (same layout), *.jsonl, *.json
    OUT/qa/shard-NNNNNN.tar           KEY.json QA sample (+ KEY.jpg)

The shards are read with `lifting.repository.iter_shard_samples` (the pipeline's own
reader, with its member-name safety checks) when it is importable; otherwise here with
`tarfile` in streaming mode (WebDataset style: the key is the member name up to the first
dot of its base name). The streaming reader is also used for QA shards and rejected/.
"""
from __future__ import annotations

import io
import json
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

log = logging.getLogger(__name__)

#: Depth PNG units per metre when a record does not say (millimetres, DESIGN.md).
DEFAULT_DEPTH_SCALE = 1000.0


@dataclass(frozen=True)
class OutputPaths:
    """Where the repository shards and the QA shards of one output folder are."""

    repo_dir: Path
    qa_dir: Path | None


def resolve(path: str | Path, qa: str | Path | None = None) -> OutputPaths | None:
    """Find the repository folder from OUT or OUT/repository, and the QA folder next to it.

    Returns None when no `shard-*.tar` is found in either place (reason for the caller:
    `repository_not_found`). `qa` overrides the QA folder.
    """
    p = Path(path)
    candidates = [p / "repository", p] if (p / "repository").is_dir() else [p]
    repo = next((c for c in candidates if any(c.glob("shard-*.tar"))), None)
    if repo is None:
        return None
    if qa is not None:
        qa_dir = Path(qa)
    else:
        qa_dir = next((c for c in (repo.parent / "qa", repo / "qa") if c.is_dir() and any(c.glob("*.tar"))), None)
    return OutputPaths(repo, qa_dir)


def _split_member(name: str) -> tuple[str, str]:
    """'dir/KEY.depth.png' -> ('dir/KEY', 'depth.png') (WebDataset key/extension rule)."""
    head, _, base = name.rpartition("/")
    key, _, ext = base.partition(".")
    return (f"{head}/{key}" if head else key), ext


def iter_tar_samples(path: str | Path, exts: set[str] | None = None) -> Iterator[dict]:
    """Samples of one WebDataset tar as dicts {'__key__': key, ext: bytes, ...}.

    Args:
        exts: extensions to read ('json', 'jpg', 'depth.png'); None reads all members.
    """
    cur: dict | None = None
    with tarfile.open(path, "r|*") as tf:
        for m in tf:
            if not m.isfile():
                continue
            key, ext = _split_member(m.name)
            if cur is None or cur["__key__"] != key:
                if cur is not None:
                    yield cur
                cur = {"__key__": key}
            if exts is None or ext in exts:
                f = tf.extractfile(m)
                cur[ext] = f.read() if f is not None else b""
    if cur is not None:
        yield cur


def shard_paths(folder: str | Path) -> list[Path]:
    """Sorted `shard-*.tar` of a folder."""
    return sorted(Path(folder).glob("shard-*.tar"))


def _parse_json(raw: bytes, where: str) -> dict | None:
    try:
        d = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("bad JSON in %s: %s", where, e)
        return None
    return d if isinstance(d, dict) else None


def _shard_reader():
    """The pipeline's shard reader (lifting.repository.iter_shard_samples) when it exists,
    else the streaming reader above; both yield {'__key__': key, ext: bytes}."""
    try:
        from lifting.repository import iter_shard_samples  # the pipeline's reader (member checks)
    except ImportError:
        return iter_tar_samples
    return iter_shard_samples


def iter_records(repo_dir: str | Path, with_image: bool = False, with_depth: bool = False,
                 include_rejected_dir: bool = True) -> Iterator[tuple[dict, dict]]:
    """Image records of a repository, each with its other files.

    Yields (record, files): `record` the KEY.json dict; `files` maps 'jpg' /
    'depth.png' to bytes when asked for. Image records found under rejected/ (images none
    of whose objects was kept) follow the shards, unless their key was already seen.
    Raises lifting.repository.RepositoryError for an unsafe shard (when that module exists).
    """
    repo_dir = Path(repo_dir)
    seen: set[str] = set()
    read = _shard_reader()
    want = ({"jpg"} if with_image else set()) | ({"depth.png"} if with_depth else set())
    for shard in shard_paths(repo_dir):
        for s in read(shard):
            if "json" not in s:
                continue
            rec = _parse_json(s["json"], f"{shard}:{s['__key__']}")
            if rec is None:
                continue
            seen.add(str(rec.get("key", s["__key__"])))
            yield rec, {k: s[k] for k in want if k in s}
    if include_rejected_dir:
        for d in iter_side(repo_dir, "rejected"):
            if "objects" in d and d.get("key") is not None and str(d["key"]) not in seen:
                seen.add(str(d["key"]))
                yield d, {}


def iter_side(repo_dir: str | Path, sub: str) -> Iterator[dict]:
    """Every JSON dict under OUT/repository/{sub}/ (rejected/ or errors/): from *.tar
    members KEY.json, *.jsonl lines and *.json files (a list or one dict)."""
    folder = Path(repo_dir) / sub
    if not folder.is_dir():
        return
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        name = p.name
        try:
            if name.endswith(".tar"):
                for s in iter_tar_samples(p, {"json"}):
                    d = _parse_json(s.get("json", b""), f"{p}:{s['__key__']}")
                    if d is not None:
                        yield d
            elif name.endswith(".jsonl"):
                with open(p, encoding="utf-8") as f:
                    for i, line in enumerate(f):
                        if line.strip():
                            d = _parse_json(line.encode(), f"{p}:{i + 1}")
                            if d is not None:
                                yield d
            elif name.endswith(".json"):
                data = json.loads(p.read_text(encoding="utf-8"))
                for d in (data if isinstance(data, list) else [data]):
                    if isinstance(d, dict):
                        yield d
        except (OSError, ValueError, tarfile.TarError) as e:
            log.warning("cannot read %s: %s", p, e)


def iter_qa(qa_dir: str | Path | None) -> Iterator[dict]:
    """QA samples (KEY.json dicts of schemas/qa_sample.schema.json) of OUT/qa/shard-*.tar."""
    if qa_dir is None:
        return
    for shard in sorted(Path(qa_dir).glob("*.tar")):
        for s in iter_tar_samples(shard, {"json"}):
            if "json" in s:
                d = _parse_json(s["json"], f"{shard}:{s['__key__']}")
                if d is not None:
                    yield d


def decode_depth(raw: bytes, record: dict) -> np.ndarray | None:
    """KEY.depth.png bytes -> (H, W) float32 z-depth in metres (0 = invalid), or None.

    Units: `record['depth_scale']` PNG units per metre when present, else millimetres.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        arr = np.asarray(Image.open(io.BytesIO(raw)))
    except (UnidentifiedImageError, OSError) as e:
        log.warning("cannot decode depth of %s: %s", record.get("key"), e)
        return None
    if arr.ndim != 2:
        return None
    scale = float(record.get("depth_scale") or DEFAULT_DEPTH_SCALE)
    return arr.astype(np.float32) / scale

"""Read a 3D object repository (OUT/repository/shard-*.tar) back, in a fixed order.

The repository is a WebDataset: each sample is `KEY.jpg` + `KEY.json` (the image record,
schemas/image_record.schema.json) and optionally `KEY.depth.png`. This module is a pure
reader (no Beam): the QA pipeline, `lift3d stats`/`eval`/`viz` and tests use it.

The standard-library `tarfile` is used instead of `webdataset`'s pipeline reader because we
need (a) a strict member-name check (no absolute paths, no `..`, no links) before anything
is trusted and (b) a deterministic shard-then-member order without shuffling machinery.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from lifting import storage

log = logging.getLogger(__name__)

SHARD_RE = re.compile(r"^shard-[0-9]{6}\.tar$")


class RepositoryError(ValueError):
    """A repository or shard that cannot be read safely; `reason` is a stable snake_case code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def list_shards(repo_dir: str | Path) -> list[str]:
    """The shard files `shard-NNNNNN.tar` directly under `repo_dir` (a local folder or a
    URL, see lifting.storage), as paths sorted by name.

    Temporary files of an unfinished write (`*.tar.tmp*`) never match.
    Raises RepositoryError('repository_missing') when `repo_dir` is not a folder.
    """
    repo = os.fspath(repo_dir)
    if not storage.isdir(repo):
        raise RepositoryError("repository_missing", repo)
    return [p for p in storage.glob(storage.join(repo, "shard-*.tar"))
            if SHARD_RE.match(storage.basename(p)) and storage.isfile(p)]


def _check_member(name: str, shard: str) -> None:
    p = PurePosixPath(name)
    if name.startswith("/") or p.is_absolute() or ".." in p.parts or "\\" in name:
        raise RepositoryError("unsafe_member_path", f"{storage.basename(shard)}: {name!r}")


def iter_shard_samples(shard_path: str | Path) -> Iterator[dict[str, bytes | str]]:
    """Samples of one shard as dicts {'__key__': KEY, EXT: bytes, ...}, sorted by key.

    A sample groups the members `KEY.EXT` (split at the first dot, as WebDataset does).
    Raises RepositoryError('unsafe_member_path') for an absolute or `..` member name and
    RepositoryError('unsafe_member_type') for links or devices, before yielding anything
    from that shard.
    """
    shard = os.fspath(shard_path)
    name = storage.basename(shard)
    samples: dict[str, dict] = {}
    try:
        with storage.open(shard, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m.name, shard)
                if not m.isfile():
                    raise RepositoryError("unsafe_member_type", f"{name}: {m.name!r}")
            for m in members:
                base = PurePosixPath(m.name).name
                if "." not in base:
                    continue
                key, ext = base.split(".", 1)
                key = str(PurePosixPath(m.name).parent / key) if "/" in m.name else key
                f = tar.extractfile(m)
                samples.setdefault(key, {"__key__": key})[ext] = f.read() if f is not None else b""
    except tarfile.TarError as e:
        raise RepositoryError("shard_unreadable", f"{name}: {e}") from e
    for key in sorted(samples):
        yield samples[key]


def iter_repository(repo_dir: str | Path) -> Iterator[tuple[dict, bytes]]:
    """(image record dict, jpg bytes) for every sample of the repository.

    Order: shards by name, then samples by key — the same on every call and machine.
    Samples without a `json` member are skipped with a warning (nothing to lift from).
    Raises RepositoryError for a missing folder or an unsafe shard (see iter_shard_samples).
    """
    for shard in list_shards(repo_dir):
        for sample in iter_shard_samples(shard):
            if "json" not in sample:
                log.warning("%s: sample %s has no json member; skipped", storage.basename(shard), sample["__key__"])
                continue
            yield json.loads(sample["json"]), bytes(sample.get("jpg", b""))


#: Units per metre of the repository's KEY.depth.png (16-bit millimetres, 0 = no depth), as
#: `pipelines.transforms.depth_png` writes it whatever the input dataset's own depth scale was.
DEPTH_PNG_SCALE = 1000.0


def decode_depth_png(raw: bytes) -> "np.ndarray":
    """KEY.depth.png bytes -> (H, W) float32 z-depth in metres (0 = no depth).

    Raises RepositoryError('depth_unreadable') when the bytes are not a one-channel PNG.
    """
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise RepositoryError("depth_unreadable", str(e)) from None
    if arr.ndim != 2:
        raise RepositoryError("depth_unreadable", f"depth PNG has shape {arr.shape}, want (H, W)")
    return arr.astype(np.float32) / np.float32(DEPTH_PNG_SCALE)

"""Find model weights on disk: an explicit local path, $LIFT3D_MODELS_DIR, or the Hugging Face cache.

Order of resolution for a model with Hugging Face repository `repo_id` (optionally one
`filename` inside it, for single-file checkpoints):
    1. `local_path` given by the user (a folder, or the checkpoint file itself);
    2. `$LIFT3D_MODELS_DIR/<org>/<name>` or `$LIFT3D_MODELS_DIR/<name>` (a pre-fetched model store);
    3. the Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else ~/.cache/huggingface/hub),
       looked up without network;
    4. a download into that cache, only when allowed and not in offline mode
       (`HF_HUB_OFFLINE=1` or `TRANSFORMERS_OFFLINE=1` forbids it).
When nothing is found, `WeightsNotFoundError` says in one line which model, where it
looked, and the command that fetches it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from lifting.models.base import WeightsNotFoundError

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set (read at call time)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def how_to_get(repo_id: str | None, filename: str | None = None, url: str | None = None) -> str:
    """The one command (or URL) that fetches a model's weights."""
    if url:
        return f"download {url}"
    if repo_id is None:
        return "pass the path of the weights"
    if filename:
        return f"huggingface-cli download {repo_id} {filename}"
    return f"huggingface-cli download {repo_id}"


def _has_required(folder: Path, required: tuple[str, ...]) -> bool:
    return folder.is_dir() and all((folder / r).exists() for r in required)


def _models_dir_candidates(repo_id: str | None, filename: str | None) -> list[Path]:
    root = os.environ.get("LIFT3D_MODELS_DIR")
    if not root or repo_id is None:
        return []
    root_p = Path(root).expanduser()
    names = [root_p / repo_id, root_p / repo_id.split("/")[-1]]
    if filename:
        names = [n / filename for n in names] + [root_p / filename]
    return names


def _from_hf_cache(repo_id: str, filename: str | None, cache_dir: Path) -> Path | None:
    """Path of a cached snapshot folder (or file) of `repo_id`, without any network access."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        if filename:
            return Path(hf_hub_download(repo_id, filename, cache_dir=str(cache_dir), local_files_only=True))
        return Path(snapshot_download(repo_id, cache_dir=str(cache_dir), local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


def find_weights(
    repo_id: str | None,
    local_path: str | os.PathLike | None = None,
    filename: str | None = None,
    required: tuple[str, ...] = ("config.json",),
) -> tuple[Path | None, list[str]]:
    """Look for weights locally (never downloads).

    Args:
        repo_id: Hugging Face repository ("org/name") or None for models without one.
        local_path: an explicit folder or checkpoint file, checked first (and only, if given).
        filename: for single-file checkpoints, the file inside the repository.
        required: files a folder must contain to count (ignored for single files).
    Returns:
        (path or None, the places looked at, as short strings for messages).
    """
    looked: list[str] = []
    if local_path is not None and str(local_path) != "":
        p = Path(local_path).expanduser()
        looked.append(str(p))
        if p.is_file():
            return p, looked
        if filename and (p / filename).is_file():
            return p / filename, looked
        if not filename and _has_required(p, required):
            return p, looked
        return None, looked  # an explicit path that is wrong is not silently replaced
    for cand in _models_dir_candidates(repo_id, filename):
        looked.append(str(cand))
        if (filename and cand.is_file()) or (not filename and _has_required(cand, required)):
            return cand, looked
    if repo_id is not None:
        cache = hf_cache_dir()
        looked.append(f"HF cache {cache}")
        hit = _from_hf_cache(repo_id, filename, cache)
        if hit is not None and (filename or _has_required(hit, required)):
            return hit, looked
    return None, looked


def resolve_weights(
    model: str,
    repo_id: str | None,
    local_path: str | os.PathLike | None = None,
    filename: str | None = None,
    required: tuple[str, ...] = ("config.json",),
    allow_download: bool | None = None,
    url: str | None = None,
) -> Path:
    """Local folder (or file) holding the weights of `model`; raise WeightsNotFoundError otherwise.

    Args:
        model: backend name for messages ("depth-anything-v2").
        repo_id, local_path, filename, required: see `find_weights`.
        allow_download: None = download into the HF cache when not offline; False = never.
        url: where single-file checkpoints without a HF repository are published.
    Returns:
        a local path usable by `from_pretrained` (folder) or by torch.load (file).
    """
    path, looked = find_weights(repo_id, local_path, filename, required)
    if path is not None:
        return path
    explicit = local_path is not None and str(local_path) != ""
    offline = is_offline()
    download = (allow_download is None or allow_download) and not offline and not explicit and repo_id is not None
    why = ""
    if download:
        from huggingface_hub import hf_hub_download, snapshot_download

        try:
            cache = str(hf_cache_dir())
            if filename:
                return Path(hf_hub_download(repo_id, filename, cache_dir=cache))
            return Path(snapshot_download(repo_id, cache_dir=cache))
        except Exception as e:  # noqa: BLE001 - any hub/network failure becomes the one-line error below
            why = f"; download failed ({type(e).__name__})"
    elif offline and not explicit:
        why = "; offline mode (HF_HUB_OFFLINE) forbids downloading"
    what = f"{repo_id}/{filename}" if (repo_id and filename) else (repo_id or filename or "weights")
    where = ", ".join(looked) if looked else "nowhere (no path given)"
    raise WeightsNotFoundError(
        f"{model}: weights {what} not found (looked in: {where}{why}); get them with "
        f"`{how_to_get(repo_id, filename, url)}` or pass weights=/path/to/them"
    )

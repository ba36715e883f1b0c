"""Weights resolution (explicit path, $LIFT3D_MODELS_DIR, HF cache, offline) and `lift3d models`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lifting.models.base import WeightsNotFoundError, resolve_device
from lifting.models.registry import backends, get_depth_estimator
from lifting.models.weights import find_weights, resolve_weights

REPO = "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf"


@pytest.fixture()
def empty_env(tmp_path, monkeypatch):
    """No model store, an empty HF cache, offline: nothing can be found or fetched."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LIFT3D_MODELS_DIR", raising=False)
    return cache


def _fake_hf_snapshot(cache: Path, repo_id: str, files: dict[str, str]) -> Path:
    """Lay out a snapshot the way huggingface_hub does: models--org--name/{refs/main, snapshots/<sha>/...}."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(sha)
    snap = root / "snapshots" / sha
    snap.mkdir(parents=True)
    for name, text in files.items():
        (snap / name).write_text(text)
    return snap


def test_explicit_path_is_used_and_a_wrong_one_is_not_replaced(tmp_path, empty_env):
    good = tmp_path / "w"
    good.mkdir()
    (good / "config.json").write_text("{}")
    assert resolve_weights("depth-anything-v2", REPO, good) == good
    _fake_hf_snapshot(empty_env, REPO, {"config.json": "{}"})
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("depth-anything-v2", REPO, tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)


def test_hf_cache_and_model_store_are_found_offline(tmp_path, empty_env, monkeypatch):
    snap = _fake_hf_snapshot(empty_env, REPO, {"config.json": "{}"})
    assert resolve_weights("depth-anything-v2", REPO) == snap
    store = tmp_path / "store"
    (store / REPO).mkdir(parents=True)
    (store / REPO / "config.json").write_text("{}")
    monkeypatch.setenv("LIFT3D_MODELS_DIR", str(store))
    assert resolve_weights("depth-anything-v2", REPO) == store / REPO  # the store comes before the cache
    # single-file checkpoints
    _fake_hf_snapshot(empty_env, "Ruicheng/moge-2-vitl-normal", {"model.pt": "x"})
    p, _ = find_weights("Ruicheng/moge-2-vitl-normal", filename="model.pt")
    assert p is not None and p.name == "model.pt"


def test_missing_weights_error_is_one_actionable_line(empty_env, monkeypatch):
    import huggingface_hub

    def no_network(*a, **kw):
        if not kw.get("local_files_only"):
            raise AssertionError("tried to download in offline mode")
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(WeightsNotFoundError) as e:
        get_depth_estimator("depth-anything-v2", device="cpu").load()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("depth-anything-v2:")  # which model
    assert str(empty_env) in msg and "offline" in msg  # where it looked, why it did not download
    assert f"huggingface-cli download {REPO}" in msg and "weights=" in msg  # how to get them


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="depth-pro"):
        get_depth_estimator("depth-everything")
    assert get_depth_estimator("sensor") is None


def test_explicit_cuda_never_falls_back():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available on this machine")
    from lifting.models.base import DeviceUnavailableError

    assert resolve_device("auto").type == "cpu"
    with pytest.raises(DeviceUnavailableError):
        resolve_device("cuda:0")


def test_lift3d_models_lists_every_backend_without_traceback(empty_env, capsys):
    from pipelines.cli import main

    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = out.splitlines()
    for b in backends():
        row = next((ln for ln in lines if ln.split()[1:2] == [b.name]), None)
        assert row is not None, f"{b.name} missing from lift3d models"
        if b.weights is not None:
            assert "missing (looked in" in row and "get with:" in row
        else:
            assert "(no model)" in row
    import importlib.util

    moge_row = next(ln for ln in lines if ln.split()[1:2] == ["moge"])
    installed = importlib.util.find_spec("moge") is not None
    assert ("missing: dlr-moge" in moge_row) != installed  # the optional package is reported


def test_lift3d_models_json_reports_found_weights(empty_env, tmp_path, capsys):
    from lifting.models.depth import tiny_random_checkpoint
    from pipelines.cli import main

    tiny = tiny_random_checkpoint("depth-anything-v2", tmp_path / "tiny")
    snap = _fake_hf_snapshot(empty_env, REPO, {})
    for f in tiny.iterdir():
        shutil.copy(f, snap / f.name)
    assert main(["models", "--json", "--kind", "depth", "--require", "depth-anything-v2"]) == 0
    st = {b["name"]: b for b in json.loads(capsys.readouterr().out)["backends"]}
    assert set(st) == {b.name for b in backends("depth")}
    assert st["depth-anything-v2"]["weights_found"] and st["depth-anything-v2"]["ready"]
    assert st["depth-anything-v2"]["weights_path"] == str(snap)
    assert not st["depth-pro"]["weights_found"] and not st["depth-pro"]["ready"]
    assert main(["models", "--kind", "depth", "--require", "depth-pro"]) == 1
    # and the found weights really load through the same resolution code
    est = get_depth_estimator("depth-anything-v2", device="cpu")
    est.load()
    assert est.weights_path == snap

"""No run opens a network connection: Beam's default local runner (SwitchingDirectRunner)
first tries its Prism runner, which downloads an executable from the internet; lift3d
chooses the local runner explicitly (pipelines/local_runner.py). Every name resolved or
address connected to during `lift3d run` must be the loopback."""
from __future__ import annotations

import socket

import pytest

LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}


@pytest.fixture
def watched(monkeypatch):
    seen: list = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *a, **kw):
        seen.append(("resolve", host))
        return real_getaddrinfo(host, *a, **kw)

    def connect(self, address):
        seen.append(("connect", address[0] if isinstance(address, tuple) else address))
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def test_a_local_run_opens_no_network_connection(watched, tmp_path):
    from lifting.synthetic import SceneConfig, write_dataset
    from pipelines import cli

    ann = write_dataset(tmp_path / "scenes", n_scenes=2, seed=1, config=SceneConfig(width=160, height=120))
    assert cli.main(["run", "--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
                     "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 0
    outside = [(what, host) for what, host in watched
               if not (isinstance(host, str) and host.startswith("/")) and host not in LOOPBACK]
    assert not outside, outside


def test_the_local_runner_is_chosen_explicitly():
    from pipelines import options as opt
    from pipelines.local_runner import LocalRunner, runner_for

    s = opt.Settings()
    assert isinstance(runner_for(opt.pipeline_options(s)), LocalRunner)
    s.beam_args = ["--runner=DirectRunner"]
    assert isinstance(runner_for(opt.pipeline_options(s)), LocalRunner)


def test_a_run_prints_no_beam_import_noise(tmp_path):
    """A fresh interpreter running `lift3d run`: Beam's import-time "apitools not found"
    warning (an unused BigQuery module) is not printed; what stderr holds is lift3d's own log."""
    import subprocess
    import sys
    from pathlib import Path

    from lifting.synthetic import SceneConfig, write_dataset

    ann = write_dataset(tmp_path / "scenes", n_scenes=1, seed=2, config=SceneConfig(width=160, height=120))
    argv = ["run", "--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
            "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"]
    p = subprocess.run([sys.executable, "-c", f"import sys; from pipelines.cli import main; sys.exit(main({argv!r}))"],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "apitools" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]

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


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_run_prints_no_beam_import_noise(tmp_path, workers):
    """A fresh interpreter running `lift3d run`, in process and with 2 worker processes:
    Beam's import-time "apitools not found" warning (an unused BigQuery module) and the
    workers' start-up warnings are not printed; what stderr holds is lift3d's own log."""
    import subprocess
    import sys
    from pathlib import Path

    from lifting.synthetic import SceneConfig, write_dataset

    ann = write_dataset(tmp_path / "scenes", n_scenes=1, seed=2, config=SceneConfig(width=160, height=120))
    argv = ["run", "--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
            "--out", str(tmp_path / "out"), "--workers", workers, "--no-progress"]
    p = subprocess.run([sys.executable, "-c", f"import sys; from pipelines.cli import main; sys.exit(main({argv!r}))"],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    for noise in ("apitools", "Traceback", "semi_persistent_directory", "Discarding unparseable", "WARNING:root"):
        assert noise not in p.stderr, p.stderr[-2000:]


_INTERRUPT_SCRIPT = """
import sys, time
import lifting.lift as L
real = L.lift_image
def slow(*a, **k):
    time.sleep(0.3)
    return real(*a, **k)
L.lift_image = slow
from pipelines.cli import entry
sys.argv = ["lift3d"] + sys.argv[1:]
entry()
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_is_one_line_and_exit_130_and_the_same_command_resumes(tmp_path, workers):
    """SIGINT to the process group while images are being lifted (as Ctrl-C in a terminal):
    one line on stderr, exit 130, no traceback; the same command then finishes the run."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from lifting.synthetic import SceneConfig, write_dataset

    root = Path(__file__).resolve().parents[1]
    ann = write_dataset(tmp_path / "scenes", n_scenes=12, seed=3, config=SceneConfig(width=160, height=120))
    out = tmp_path / "out"
    argv = ["lift", "--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
            "--out", str(out), "--workers", workers, "--samples-per-shard", "2", "--no-progress"]
    script = tmp_path / "slow.py"
    script.write_text(_INTERRUPT_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), *argv], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and proc.poll() is None and not (out / "repository" / "_parts" / "_run.json").exists():
        time.sleep(0.02)
    time.sleep(1.5)  # inside the slowed lift stage (12 images x 0.3 s)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("INFO")]
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and lines == ["lift3d lift: interrupted"], err[-3000:]
    assert not (out / "repository" / "manifest.json").exists()
    # the same command resumes and finishes
    p2 = subprocess.run([sys.executable, "-c", "import sys; from pipelines.cli import main; sys.exit(main(sys.argv[1:]))",
                         *argv], cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
    assert p2.returncode == 0, p2.stderr[-2000:]
    assert (out / "repository" / "manifest.json").exists()


def _children(pid: int) -> list[int]:
    """pids whose parent is `pid` (Linux /proc)."""
    import os

    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="needs Linux /proc to find worker processes")
def test_kill_9_of_the_driver_leaves_no_worker_running(tmp_path):
    """kill -9 of `lift3d lift` with 2 worker processes (in their own session, so the kill
    does not reach them): the workers exit by themselves once their control channel to the
    dead driver breaks."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from lifting.synthetic import SceneConfig, write_dataset

    root = Path(__file__).resolve().parents[1]
    ann = write_dataset(tmp_path / "scenes", n_scenes=40, seed=4, config=SceneConfig(width=320, height=240))
    argv = ["lift", "--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
            "--out", str(tmp_path / "out"), "--workers", "2", "--samples-per-shard", "2", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-c", "from pipelines.cli import entry; import sys; "
                             f"sys.argv = ['lift3d'] + {argv!r}; entry()"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(root)})
    workers: list[int] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and proc.poll() is None and len(workers) < 2:
        workers = [c for c in _children(proc.pid) if b"worker_main" in _cmdline(c)
                   or any(b"worker_main" in _cmdline(g) for g in _children(c))]
        time.sleep(0.05)
    if proc.poll() is not None or not workers:
        pytest.skip("the run ended before its workers could be seen")
    tree = set(workers) | {g for w in workers for g in _children(w)}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and any(_alive(p) for p in tree):
        time.sleep(0.2)
    assert not [p for p in tree if _alive(p)], "worker processes outlived the driver by 60 s"

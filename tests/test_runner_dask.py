"""The whole `lift3d run` on Beam's DaskRunner over a dask.distributed cluster of separate
worker processes (no shared memory with the driver): the same bytes as the direct runner."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed (pip install -e "
                                  "'.[dev]'): Dask runner test skipped")

N_SCENES = 5


def _argv(ann: Path, out: Path, *more: str) -> list[str]:
    return ["run", "--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
            "--out", str(out), "--samples-per-shard", "2", "--no-progress", *more]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_parts" not in p.parts}


def test_lift3d_run_on_a_two_process_dask_cluster_matches_the_direct_runner(tmp_path):
    from lifting.synthetic import SceneConfig, write_dataset
    from pipelines import cli

    ann = write_dataset(tmp_path / "scenes", n_scenes=N_SCENES, seed=11, config=SceneConfig(width=240, height=180))
    assert cli.main(_argv(ann, tmp_path / "direct", "--workers", "1")) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        assert len(pids) == 2 and os.getpid() not in pids.values() and len(set(pids.values())) == 2
        assert cli.main(_argv(ann, tmp_path / "dask", "--runner", "dask", "--dask-address",
                              cluster.scheduler_address)) == 0
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert sum(executed.values()) > 0  # the work ran in the worker processes
    for part in ("repository", "qa"):
        direct, dask = _files(tmp_path / "direct" / part), _files(tmp_path / "dask" / part)
        assert any(k.startswith("shard-") for k in direct)
        assert direct == dask, part


def test_dask_flags_are_checked_before_any_work(tmp_path, capsys):
    from pipelines import cli

    ann = tmp_path / "missing.json"
    assert cli.main(_argv(ann, tmp_path / "o", "--dask-address", "tcp://127.0.0.1:1")) == 2
    err = capsys.readouterr().err
    assert "--dask-address needs --runner dask" in err and not (tmp_path / "o").exists()


class _DieOnce(distributed.WorkerPlugin):
    """Dask worker plugin: the first worker to start executing a task once a file matches
    `armed` (a glob) dies on the spot (os._exit), once for the whole cluster (an O_EXCL marker
    file): a worker lost mid-task, as a preempted machine is."""

    def __init__(self, marker: str, armed: str):
        self.marker, self.armed = marker, armed

    def transition(self, key, start, finish, **kwargs):
        import glob

        if finish != "executing" or not glob.glob(self.armed):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(key).encode()[:200])
        os.close(fd)
        os._exit(1)


def test_a_worker_lost_mid_task_is_retried_by_the_runner_and_written_once(tmp_path):
    """One Dask worker process dies while it executes a task of `lift3d run`: the nanny starts
    a new one, the scheduler runs the task again, and the run ends with the direct runner's
    bytes -- nothing lost, nothing written twice."""
    from lifting.synthetic import SceneConfig, write_dataset
    from pipelines import cli

    ann = write_dataset(tmp_path / "scenes", n_scenes=N_SCENES, seed=12, config=SceneConfig(width=240, height=180))
    assert cli.main(_argv(ann, tmp_path / "direct", "--workers", "1")) == 0
    marker = tmp_path / "killed"
    # armed once the first unit of the lift is done: the worker dies while units are lifted
    # and written (or, if the lift is already over, during the QA stage)
    armed = tmp_path / "dask" / "repository" / "_parts" / "shard-*.stats.json"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        client.register_plugin(_DieOnce(str(marker), str(armed)), name="die-once")
        assert cli.main(_argv(ann, tmp_path / "dask", "--runner", "dask", "--dask-address",
                              cluster.scheduler_address)) == 0
    assert marker.exists(), "no worker was lost: the test did not test anything"
    for part in ("repository", "qa"):
        direct, dask = _files(tmp_path / "direct" / part), _files(tmp_path / "dask" / part)
        assert any(k.startswith("shard-") for k in direct)
        assert direct == dask, part

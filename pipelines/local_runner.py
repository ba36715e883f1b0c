"""The local runner, chosen explicitly.

Beam's default local runner (`DirectRunner` = `SwitchingDirectRunner`) first tries its Prism
runner, which downloads a release executable from the internet (a DNS query and an
`urlopen`, then a fall-back when it fails): on a networked host the pipeline would run on a
runner this project never tested, and nothing here may open a network connection. lift3d
therefore runs local pipelines on the FnApiRunner itself -- what SwitchingDirectRunner falls
back to for batch pipelines, with the same provision info (the encoded pipeline options) --
honouring `--direct_num_workers` and `--direct_running_mode`. Hand-written because Beam has
no option to switch Prism off.
"""
from __future__ import annotations

import logging

from apache_beam.runners.runner import PipelineRunner


class LocalRunner(PipelineRunner):
    """Beam's FnApiRunner on this machine (batch), never Prism.

    With `--direct_running_mode multi_processing` its worker processes
    - are started in their own session: Ctrl-C in the terminal reaches the driver only, which
      stops the run with one line (pipelines.lift_pipeline._run_to_end) and kills them,
      instead of every worker printing its own KeyboardInterrupt traceback;
    - run `pipelines.worker_main` (Beam's SDK worker that dies with the driver, so kill -9 of
      the driver leaves none behind), exec'd by Beam's shell command line;
    - print to /dev/null (Beam's start-up noise; their log records and a failed bundle's
      traceback reach the driver through Beam's channels; a worker that cannot start shows as
      Beam's "Worker subprocess exited with return code N")."""

    def run_pipeline(self, pipeline, options):
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability import local_job_service
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        real = local_job_service.subprocess
        detached = local_job_service.subprocess = _DetachedSubprocess(real)
        _RUNNING.append(detached)
        relay = logging.getLogger("apache_beam.runners.portability.local_job_service")
        level = relay.level
        relay.setLevel(max(level, logging.ERROR))  # workers' warnings relayed: start-up noise only
        try:
            return fn_runner.FnApiRunner(provision_info=info).run_pipeline(pipeline, options)
        except BaseException:
            detached.kill_all()  # an interrupted or failed run leaves no worker behind
            raise
        finally:
            local_job_service.subprocess = real
            _RUNNING.remove(detached)
            relay.setLevel(level)


#: the worker-process registries of the LocalRunner runs in progress in this process
_RUNNING: list = []


def kill_workers() -> None:
    """Kill the worker processes of every LocalRunner run in progress (on Ctrl-C: they are in
    their own sessions, and the runner would otherwise wait for them to finish their bundles)."""
    for detached in list(_RUNNING):
        detached.kill_all()


#: how Beam's SubprocessSdkWorker command line names the worker module
_BEAM_WORKER = "-m apache_beam.runners.worker.sdk_worker_main"


class _DetachedSubprocess:
    """The `subprocess` module as Beam's SubprocessSdkWorker sees it during a LocalRunner run:
    its Popen starts the worker as LocalRunner says (hand-written: Beam has no option for it)."""

    def __init__(self, module):
        self._module = module
        self.started: list = []

    def __getattr__(self, name):
        return getattr(self._module, name)

    def Popen(self, *args, **kwargs):  # noqa: N802 - the module's name
        kwargs.setdefault("start_new_session", True)
        # what a worker prints itself is Beam's start-up noise (its import-time warnings, its
        # own flags it cannot parse); its log records and a failed bundle's traceback reach
        # the driver through Beam's logging and control channels
        kwargs.setdefault("stdout", self._module.DEVNULL)
        kwargs.setdefault("stderr", self._module.DEVNULL)
        if kwargs.get("shell") and args and isinstance(args[0], str) and _BEAM_WORKER in args[0]:
            # the worker dies with the driver (pipelines/worker_main.py); `exec` makes the shell
            # Beam starts become the worker, a direct child of the driver
            args = ("exec " + args[0].replace(_BEAM_WORKER, "-m pipelines.worker_main"),) + tuple(args[1:])
        proc = self._module.Popen(*args, **kwargs)
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        """Kill every worker process (and its session) that is still running."""
        import os
        import signal

        for proc in self.started:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    proc.kill()


def runner_for(options) -> PipelineRunner | None:
    """LocalRunner when `options` select the local runner (no --runner, or DirectRunner and
    its aliases), else None (Beam builds the runner the options name: Dataflow, Flink, Dask ...)."""
    from pipelines.options import is_local

    return LocalRunner() if is_local(options) else None

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

from apache_beam.runners.runner import PipelineRunner


class LocalRunner(PipelineRunner):
    """Beam's FnApiRunner on this machine (batch), never Prism."""

    def run_pipeline(self, pipeline, options):
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return fn_runner.FnApiRunner(provision_info=info).run_pipeline(pipeline, options)


def runner_for(options) -> PipelineRunner | None:
    """LocalRunner when `options` select the local runner (no --runner, or DirectRunner and
    its aliases), else None (Beam builds the runner the options name: Dataflow, Flink, Dask ...)."""
    from pipelines.options import is_local

    return LocalRunner() if is_local(options) else None

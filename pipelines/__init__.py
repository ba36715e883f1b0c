"""Apache Beam transforms, sinks, options and the `lift3d` command."""
import logging


class _DropBeamImportNoise(logging.Filter):
    """Beam's BigQuery client module logs "apitools not found, and bigquery client libraries
    are not available ..." on the root logger when apache_beam is imported: an IO this
    project never uses, which a new user reads as a failure. Installed before any module of
    this package imports apache_beam."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


logging.getLogger().addFilter(_DropBeamImportNoise())

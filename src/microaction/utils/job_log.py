"""A Hydra callback that writes a failed job's traceback into the job's own log file.

Hydra prints the error of a failed job only to the console, so a sweep folder alone cannot tell a job
that failed from one that is still running or was killed. With this callback (conf/hydra/default.yaml)
the job's log (``<job>/train.log``) ends with the traceback, which ``microaction.results`` reads.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# the line that opens the record; microaction.results looks for Python's own "Traceback" line below it
FAILED_MARK = "job failed"


def _job_log_handlers(output_dir: Path) -> list[logging.FileHandler]:
    """The root logger's file handlers that write inside ``output_dir`` (Hydra's job log)."""
    handlers = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            try:
                inside = Path(handler.baseFilename).resolve().parent == output_dir.resolve()
            except OSError:
                inside = False
            if inside:
                handlers.append(handler)
    return handlers


class LogJobFailure(Callback):
    """On a failed job, the exception with its traceback as an ERROR record in the job's log file only
    (the console already shows Hydra's report). Without a job log handler (``hydra/job_logging=none``)
    the record is appended to ``<output_dir>/<job name>.log``."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        # the stored exception, as Hydra's own LogJobReturnCallback reads it (the public return_value
        # re-raises it, which would add this frame to its traceback)
        error = getattr(job_return, "_return_value", None)
        if not isinstance(error, BaseException):
            return
        output_dir = Path(str(config.hydra.runtime.output_dir))
        record = logging.LogRecord(
            name="microaction.job", level=logging.ERROR, pathname=__file__, lineno=0,
            msg="%s: %s", args=(FAILED_MARK, f"{type(error).__name__}: {error}"),
            exc_info=(type(error), error, error.__traceback__),
        )
        handlers = _job_log_handlers(output_dir)
        for handler in handlers:
            handler.handle(record)
            handler.flush()
        if not handlers:
            output_dir.mkdir(parents=True, exist_ok=True)
            with open(output_dir / f"{config.hydra.job.name}.log", "a", encoding="utf-8") as f:
                f.write(f"{FAILED_MARK}: {type(error).__name__}: {error}\n")
                f.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))

"""Logging: to stderr as text, or one JSON object per line (`[log] format = "json"`).

With `workers = N` every line of a worker names it (`[worker 1]`, JSON `"worker": 1`).
"""

from __future__ import annotations

import json
import logging
import time

from consuldns.ops.settings import LogSettings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(worker)s: %(message)s"
_worker: int | None = None  # this process's slot, when it is one of several workers


def set_worker(slot: int) -> None:
    """From now on, every line this process logs names worker `slot`."""
    global _worker
    _worker = slot


def _tag_worker(record: logging.LogRecord) -> bool:
    record.worker = "" if _worker is None else f" [worker {_worker}]"
    return True


def configure(settings: LogSettings) -> None:
    """Root logging to stderr with the level and format of `settings` (start-up and reload)."""
    handler = logging.StreamHandler()
    handler.addFilter(_tag_worker)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    # httpx logs every request at INFO: the watch's blocking queries would flood the log.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


class JsonFormatter(logging.Formatter):
    """`[log] format = "json"`: every log line is one JSON object (query lines included)."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if _worker is not None:
            document["worker"] = _worker
        query = getattr(record, "query", None)
        if query is not None:
            document.update(query)
        else:
            document["message"] = record.getMessage()
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document)

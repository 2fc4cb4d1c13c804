"""Logging set-up: Kopf's formatters (text by default, one JSON object per line with ``log_format=json``).

Every line the operator writes about a resource starts with ``namespace/name``. Libraries that log each HTTP
request (httpx, urllib3, aiohttp's access log of health probes) are kept at WARNING: their lines add volume,
not insight, and a chatty debug logger is the classic way a credential ends up in a log file.

Python warnings (urllib3's ``InsecureRequestWarning`` when a kubeconfig skips TLS verification, a library's
deprecation) are routed through logging as well (``logging.captureWarnings``): with ``log_format=json`` every
line on stderr is then one JSON object, which is what log shippers parse.
"""

from __future__ import annotations

import logging

import kopf

from ..settings import OperatorSettings

__all__ = ["configure_logging"]


def configure_logging(settings: OperatorSettings) -> None:
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    # Kopf runs no handler per resource (kopf_edge/handlers.py), so it writes no per-object lines; the lines it
    # writes are about the process (start-up, peering, the API connection).
    kopf.configure(verbose=settings.log_level == "DEBUG", log_format=log_format,
                   log_prefix=settings.log_format == "text")
    logging.getLogger().setLevel(settings.log_level)
    logging.captureWarnings(True)
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

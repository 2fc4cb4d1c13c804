"""The OAuth 2.0 client: everything between a resolved client configuration and a :class:`Token`.

Pure parts (request building, client authentication, response parsing, error classification) are separate
modules tested without a network; ``client`` is the thin httpx edge that sends what they build.
"""

from __future__ import annotations

from .classify import classify_error_response, classify_transport_error, redact
from .client import TokenClient, TokenResult
from .clientauth import ClientAuth, strategy_for
from .model import ClientConfig, TLSMaterial, Token
from .request import BasicEncoding, PreparedRequest, build_token_request
from .response import parse_token_response

__all__ = [
    "BasicEncoding",
    "ClientAuth",
    "ClientConfig",
    "PreparedRequest",
    "TLSMaterial",
    "Token",
    "TokenClient",
    "TokenResult",
    "build_token_request",
    "classify_error_response",
    "classify_transport_error",
    "parse_token_response",
    "redact",
    "strategy_for",
]

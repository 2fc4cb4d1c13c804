"""The OAuth 2.0 client: everything between a resolved client configuration and a :class:`Token`.

Pure parts (request building, client authentication, response parsing, error classification) are separate
modules tested without a network; ``client`` is the thin httpx edge that sends what they build.
"""

from __future__ import annotations

from .model import ClientConfig, TLSMaterial, Token

__all__ = ["ClientConfig", "TLSMaterial", "Token"]

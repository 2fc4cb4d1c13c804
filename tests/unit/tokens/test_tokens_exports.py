"""Every module of ``tokens`` declares its public names, and they all exist (httpx's habit)."""

from __future__ import annotations

import importlib

import pytest

import oauth_token_operator.tokens as tokens

MODULES = ["assertion", "classify", "client", "clientauth", "discovery", "model", "request", "response", "tls"]


@pytest.mark.parametrize("name", MODULES)
def test_module_all_is_declared_and_resolves(name: str) -> None:
    module = importlib.import_module(f"oauth_token_operator.tokens.{name}")
    assert module.__all__ and len(set(module.__all__)) == len(module.__all__)
    for export in module.__all__:
        assert hasattr(module, export), f"{name}.{export}"


def test_package_exports_resolve_and_are_public_module_names() -> None:
    public = {
        export for name in MODULES for export in importlib.import_module(f"oauth_token_operator.tokens.{name}").__all__
    }
    assert set(tokens.__all__) <= public
    for export in tokens.__all__:
        assert getattr(tokens, export) is not None
    for needed in (
        "TokenClient",
        "TokenResult",
        "build_token_request",
        "parse_token_response",
        "classify_error_response",
        "classify_transport_error",
    ):
        assert needed in tokens.__all__

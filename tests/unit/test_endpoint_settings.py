"""How the endpoint settings become the token client's rules: one place (``app.token_client``) for run and token."""

from __future__ import annotations

import ipaddress

import pytest

from oauth_token_operator.app import denied_networks
from oauth_token_operator.cli import _parser, _settings
from oauth_token_operator.settings import OperatorSettings
from oauth_token_operator.tokens.egress import denied_reason

API = ipaddress.ip_address("192.0.2.44")
METADATA = ipaddress.ip_address("169.254.169.254")


def test_unset_is_the_default_list_plus_the_api_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.delenv("OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS", raising=False)
    denied = denied_networks(OperatorSettings(), api_server_url="https://192.0.2.44:6443")
    assert denied.api_server == {API, ipaddress.ip_address("10.96.0.1")}
    assert denied_reason(API, denied) == ", the Kubernetes API server's address in 192.0.2.44/32"
    assert denied_reason(METADATA, denied) is not None


def test_empty_denies_nothing_and_explicit_replaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert not denied_networks(OperatorSettings(denied_endpoint_networks=""), api_server_url="https://192.0.2.44")
    custom = denied_networks(OperatorSettings(denied_endpoint_networks="10.0.0.0/8"), api_server_url="https://192.0.2.44")
    assert denied_reason(ipaddress.ip_address("10.2.3.4"), custom) is not None
    assert denied_reason(API, custom) is None and denied_reason(METADATA, custom) is None


@pytest.mark.parametrize("command", ["run", "token"])
def test_flags_set_the_endpoint_settings(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTH_TOKEN_OPERATOR_DENIED_ENDPOINT_NETWORKS", "127.0.0.0/8")
    extra = ["-f", "x.yaml"] if command == "token" else []
    flags = [command, *extra, "--denied-endpoint-networks", "", "--allow-insecure-skip-verify"]
    settings = _settings(_parser().parse_args(flags))
    assert settings.denied_endpoint_networks == ""  # the flag wins over the environment
    assert settings.allow_insecure_skip_verify is True
    unset = _settings(_parser().parse_args([command, *extra]))
    assert unset.denied_endpoint_networks == "127.0.0.0/8" and unset.allow_insecure_skip_verify is False

"""private_key_jwt assertions (RFC 7523 §3): every claim, the kid header, algorithms, and key problems."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretStr
from tokens_testkit import ec_key, private_pem, rsa_key

from oauth_token_operator.api import AuthMethod, SigningAlgorithm
from oauth_token_operator.errors import CredentialsNotFound, InvalidSpec
from oauth_token_operator.tokens.clientauth import build_client_assertion, load_signing_key, signing_algorithm_for
from oauth_token_operator.tokens.model import ClientConfig
from oauth_token_operator.tokens.request import build_token_request

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
URL = "https://idp.example.com/realms/apps/protocol/openid-connect/token"


def _config(pem: str, **fields: Any) -> ClientConfig:
    return ClientConfig(
        client_id="torch-client", auth_method=AuthMethod.PRIVATE_KEY_JWT, private_key_pem=SecretStr(pem), **fields
    )


def _decode(assertion: str, public_key: Any, algorithm: str, audience: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(assertion)
    claims = jwt.decode(
        assertion,
        public_key,
        algorithms=[algorithm],
        audience=audience,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    return header, claims


@pytest.mark.parametrize(
    ("key_factory", "algorithm"),
    [
        (rsa_key, "RS256"),
        (lambda: ec_key("P-256"), "ES256"),
        (lambda: ec_key("P-384"), "ES384"),
        (lambda: ec_key("P-521"), "ES512"),
    ],
    ids=["rsa", "p256", "p384", "p521"],
)
def test_assertion_claims_and_header(key_factory: Any, algorithm: str) -> None:
    key = key_factory()
    config = _config(private_pem(key), signing_key_id="client-key-1")
    request = build_token_request(config, URL, now=NOW, jti="4f1c0b4e")
    form = dict(request.form)
    assert form["client_id"] == "torch-client"
    header, claims = _decode(form["client_assertion"], key.public_key(), algorithm, URL)
    assert header == {"alg": algorithm, "typ": "JWT", "kid": "client-key-1"}
    issued = int(NOW.timestamp())
    assert claims == {
        "iss": "torch-client",
        "sub": "torch-client",
        "aud": URL,
        "jti": "4f1c0b4e",
        "iat": issued,
        "exp": issued + 60,
    }


def test_assertion_audience_override_and_no_kid() -> None:
    config = _config(private_pem(rsa_key()), assertion_audience="https://idp.example.com/realms/apps")
    assertion = build_client_assertion(config, URL, now=NOW, jti="j")
    header, claims = _decode(assertion, rsa_key().public_key(), "RS256", "https://idp.example.com/realms/apps")
    assert "kid" not in header
    assert claims["aud"] == "https://idp.example.com/realms/apps"


def test_each_request_gets_its_own_jti() -> None:
    config = _config(private_pem(ec_key("P-256")))
    first = jwt.decode(build_client_assertion(config, URL, now=NOW, jti="a"), options={"verify_signature": False})
    second = jwt.decode(build_client_assertion(config, URL, now=NOW, jti="b"), options={"verify_signature": False})
    assert (first["jti"], second["jti"]) == ("a", "b")


@pytest.mark.parametrize("algorithm", ["RS384", "RS512", "PS256", "PS512"])
def test_explicit_rsa_algorithms(algorithm: str) -> None:
    config = _config(private_pem(rsa_key()), signing_algorithm=SigningAlgorithm(algorithm))
    assertion = build_client_assertion(config, URL, now=NOW, jti="j")
    header, _ = _decode(assertion, rsa_key().public_key(), algorithm, URL)
    assert header["alg"] == algorithm


@pytest.mark.parametrize(
    ("key_factory", "algorithm", "needle"),
    [
        (lambda: ec_key("P-256"), "RS256", "EC key"),
        (lambda: ec_key("P-256"), "ES384", "use ES256"),
        (rsa_key, "ES256", "RSA key"),
        (lambda: ec_key("secp256k1"), None, "secp256k1"),
    ],
    ids=["ec-as-rs256", "p256-as-es384", "rsa-as-es256", "unsupported-curve"],
)
def test_key_and_algorithm_mismatch(key_factory: Any, algorithm: str | None, needle: str) -> None:
    pem = private_pem(key_factory())
    config = _config(pem, signing_algorithm=SigningAlgorithm(algorithm) if algorithm else None)
    with pytest.raises(InvalidSpec, match=needle) as caught:
        build_client_assertion(config, URL, now=NOW, jti="j")
    _assert_no_key_material(caught.value.message, pem)


def _assert_no_key_material(message: str, pem: str) -> None:
    assert "PRIVATE KEY" not in message
    for line in pem.splitlines()[1:-1]:
        assert line not in message


@pytest.mark.parametrize(
    ("pem", "needle"),
    [
        ("-----BEGIN PRIVATE KEY-----\nnot-a-key-CANARY-s3cr3t-9f2c\n-----END PRIVATE KEY-----\n", "could not be read"),
        ("CANARY-s3cr3t-9f2c", "could not be read"),
        (private_pem(rsa_key(), password=b"hunter2"), "encrypted"),
        (
            ed25519.Ed25519PrivateKey.generate()
            .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            .decode(),
            "unsupported type",
        ),
    ],
    ids=["garbage-pem", "not-pem", "encrypted", "ed25519"],
)
def test_unusable_keys_are_invalid_spec_without_key_material(pem: str, needle: str) -> None:
    with pytest.raises(InvalidSpec, match=needle) as caught:
        build_client_assertion(_config(pem), URL, now=NOW, jti="j")
    assert "CANARY" not in caught.value.message
    # the library's exception (which could quote the key) is not chained into tracebacks either
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__
    _assert_no_key_material(caught.value.message, pem)


@pytest.mark.parametrize("pem", [None, "", "   \n"])
def test_missing_key_is_credentials_not_found(pem: str | None) -> None:
    config = ClientConfig(
        client_id="torch",
        auth_method=AuthMethod.PRIVATE_KEY_JWT,
        private_key_pem=SecretStr(pem) if pem is not None else None,
    )
    with pytest.raises(CredentialsNotFound, match="privateKeySecretRef"):
        build_client_assertion(config, URL, now=NOW, jti="j")


def test_signing_algorithm_for_derives_from_key() -> None:
    assert signing_algorithm_for(load_signing_key(private_pem(rsa_key()))) is SigningAlgorithm.RS256
    assert signing_algorithm_for(load_signing_key(private_pem(ec_key("P-384")))) is SigningAlgorithm.ES384

"""JWT client assertions (RFC 7523 §2.2, OpenID Connect Core §9): ``private_key_jwt`` and ``client_secret_jwt``.

An assertion is a short-lived JWT: ``iss`` = ``sub`` = the client ID, ``aud`` = ``assertionAudience`` or the
token endpoint URL, a fresh ``jti`` per request (servers may refuse a replayed one), ``iat`` = now and
``exp`` = now + 60 s. It is minted per request rather than cached: it is cheap to sign and a short lifetime
limits what a leaked request log could replay.

``private_key_jwt`` signs with the client's private key (RSA or EC, PyJWT). ``client_secret_jwt`` signs with
the client secret as an HMAC key (HS256/384/512); the secret itself never leaves the process. The HMAC JWS is
computed here with :mod:`hmac` (RFC 7515 compact serialisation is three base64url parts) rather than through
PyJWT, which warns about secrets shorter than the hash (RFC 7518 §3.2 *recommends* that length, servers such
as Keycloak accept what they generated, and a warning per request would only flood the log).

Key problems are input problems (:class:`~oauth_token_operator.errors.InvalidSpec`) and their messages never
quote the key or the library's exception text, which could hold fragments of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..api import HMAC_ALGORITHMS, SigningAlgorithm
from ..errors import CredentialsNotFound, InvalidSpec
from .model import ClientConfig

__all__ = [
    "ASSERTION_LIFETIME_SECONDS",
    "JWT_BEARER_ASSERTION_TYPE",
    "SigningKey",
    "assertion_claims",
    "build_client_assertion",
    "build_client_secret_assertion",
    "load_signing_key",
    "signing_algorithm_for",
]

JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 60

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# JWS EC algorithms are bound to one curve each (RFC 7518 §3.4).
_EC_CURVE_ALGORITHMS = {
    "secp256r1": SigningAlgorithm.ES256,
    "secp384r1": SigningAlgorithm.ES384,
    "secp521r1": SigningAlgorithm.ES512,
}
_RSA_ALGORITHMS = frozenset(
    {
        SigningAlgorithm.RS256,
        SigningAlgorithm.RS384,
        SigningAlgorithm.RS512,
        SigningAlgorithm.PS256,
        SigningAlgorithm.PS384,
        SigningAlgorithm.PS512,
    }
)
_HMAC_HASHES = {
    SigningAlgorithm.HS256: hashlib.sha256,
    SigningAlgorithm.HS384: hashlib.sha384,
    SigningAlgorithm.HS512: hashlib.sha512,
}
_KEY_HELP = "privateKeySecretRef must hold an unencrypted PEM RSA or EC (P-256, P-384, P-521) private key"


def load_signing_key(pem: str) -> SigningKey:
    """Parse a PEM private key (PKCS#8, PKCS#1 or SEC1). Raises InvalidSpec without quoting anything."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except TypeError:  # the key is encrypted; cryptography says so with a TypeError
        raise InvalidSpec(f"the private key is encrypted; {_KEY_HELP}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidSpec(f"the private key could not be read; {_KEY_HELP}") from None
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    raise InvalidSpec(f"the private key is of an unsupported type ({type(key).__name__}); {_KEY_HELP}")


def signing_algorithm_for(key: SigningKey, requested: SigningAlgorithm | None = None) -> SigningAlgorithm:
    """``requested`` if the key can sign with it, else the algorithm the key implies (RSA → RS256, EC by curve).

    A mismatch (an EC key with RS256, a P-256 key with ES384) is an InvalidSpec naming both sides.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        if requested is None:
            return SigningAlgorithm.RS256
        if requested in _RSA_ALGORITHMS:
            return requested
        raise InvalidSpec(
            f"signingAlgorithm {requested} does not match the private key, which is an RSA "
            "key (use RS256/RS384/RS512/PS256/PS384/PS512, or omit signingAlgorithm)"
        )
    curve = key.curve.name
    implied = _EC_CURVE_ALGORITHMS.get(curve)
    if implied is None:
        raise InvalidSpec(
            f"the private key is an EC key on curve {curve}, which JWS client assertions do "
            "not support; use P-256, P-384 or P-521"
        )
    if requested is None or requested is implied:
        return implied
    raise InvalidSpec(
        f"signingAlgorithm {requested} does not match the private key, which is an EC key on "
        f"{curve} (use {implied}, or omit signingAlgorithm)"
    )


def assertion_claims(config: ClientConfig, token_url: str, *, now: datetime, jti: str) -> dict[str, Any]:
    """The RFC 7523 §3 claims of a client assertion for one request to ``token_url``."""
    issued_at = int(now.timestamp())
    return {
        "iss": config.client_id,
        "sub": config.client_id,
        "aud": config.assertion_audience or token_url,
        "jti": jti,
        "iat": issued_at,
        "exp": issued_at + ASSERTION_LIFETIME_SECONDS,
    }


def build_client_assertion(config: ClientConfig, token_url: str, *, now: datetime, jti: str) -> str:
    """The ``private_key_jwt`` ``client_assertion`` for one request to ``token_url``."""
    if config.private_key_pem is None or not config.private_key_pem.get_secret_value().strip():
        where = config.credentials_source or "the private key Secret"
        raise CredentialsNotFound(
            f"authMethod private_key_jwt needs a private key, but {where} has none (privateKeySecretRef)"
        )
    key = load_signing_key(config.private_key_pem.get_secret_value())
    algorithm = signing_algorithm_for(key, config.signing_algorithm)
    claims = assertion_claims(config, token_url, now=now, jti=jti)
    headers = {"kid": config.signing_key_id} if config.signing_key_id else None
    try:
        return jwt.encode(claims, key, algorithm=algorithm.value, headers=headers)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:  # e.g. a key too small for PS512's padding
        raise InvalidSpec(
            f"signing the client assertion with {algorithm} failed ({type(exc).__name__}); {_KEY_HELP}"
        ) from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def build_client_secret_assertion(
    config: ClientConfig, token_url: str, client_secret: str, *, now: datetime, jti: str
) -> str:
    """The ``client_secret_jwt`` ``client_assertion``: the claims signed with HMAC keyed by the secret."""
    algorithm = config.signing_algorithm or SigningAlgorithm.HS256
    if algorithm not in HMAC_ALGORITHMS:
        raise InvalidSpec(
            f"signingAlgorithm {algorithm} cannot be used with authMethod client_secret_jwt "
            "(use HS256, HS384 or HS512, or omit signingAlgorithm)"
        )
    header: dict[str, str] = {"alg": algorithm.value, "typ": "JWT"}
    if config.signing_key_id:
        header["kid"] = config.signing_key_id
    claims = assertion_claims(config, token_url, now=now, jti=jti)
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = hmac.new(client_secret.encode(), signing_input.encode("ascii"), _HMAC_HASHES[algorithm]).digest()
    return f"{signing_input}.{_b64url(signature)}"

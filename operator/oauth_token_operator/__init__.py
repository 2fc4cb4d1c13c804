"""oauth-token-operator: keeps OAuth 2.0 client_credentials access tokens fresh in Kubernetes Secrets.

The public Python surface is small: the API models (``api``), the settings, and the version. Everything else
is an implementation detail of the operator and the ``oauth-token-operator`` command.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .api import API_VERSION, OAuthClientCredential, OAuthClientCredentialSpec, OAuthClientCredentialStatus
from .reasons import Reason
from .settings import OperatorSettings

try:
    __version__ = version("oauth-token-operator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

#: How the operator introduces itself to token endpoints and to the Kubernetes API server (whose audit log
#: records it), on every request it sends.
USER_AGENT = f"oauth-token-operator/{__version__}"

__all__ = [
    "API_VERSION",
    "USER_AGENT",
    "OAuthClientCredential",
    "OAuthClientCredentialSpec",
    "OAuthClientCredentialStatus",
    "OperatorSettings",
    "Reason",
    "__version__",
]

"""``python -m oauth_token_operator`` is the same as the ``oauth-token-operator`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Everything the operator reads from and writes to the Kubernetes API.

``client`` (requests, through the official, synchronous ``kubernetes`` client moved off the event loop into a
thread pool) and ``watch`` (metadata-only watches of Secrets and ConfigMaps, a thread each) are the only
modules here doing I/O, and this package is the only one that imports ``kubernetes`` or ``urllib3``
(``.importlinter``: kubernetes-edge). ``target`` and ``status`` are pure (pure-core contract): what the target
Secret and the status should contain.
"""

from __future__ import annotations

__all__: list[str] = []

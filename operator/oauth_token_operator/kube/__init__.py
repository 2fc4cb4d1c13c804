"""Everything the operator reads from and writes to the Kubernetes API.

``client`` is the only module doing I/O (through the official, synchronous ``kubernetes`` client, moved off
the event loop into a thread pool); the others are pure: what the target Secret and the status should contain.
"""

from __future__ import annotations

__all__: list[str] = []

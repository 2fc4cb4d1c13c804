"""The Kopf edge: the only package that imports kopf (``.importlinter`` enforces it).

``handlers`` registers the start-up and clean-up, ``peering`` observes Kopf's peering decision for our
scheduler, ``logs`` configures Kopf's log formats, ``run`` starts the operator. Everything they call is plain
Python that knows nothing of Kopf.
"""

from __future__ import annotations

__all__: list[str] = []

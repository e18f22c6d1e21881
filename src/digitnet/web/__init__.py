"""The drawing page and JSON API of ``digitnet serve``.

:mod:`digitnet.web.service` turns API requests into predictions (no HTTP in it);
:mod:`digitnet.web.app` wires it into a Starlette application with the page in ``static/``.
"""

from __future__ import annotations

from digitnet.web.app import create_app

__all__ = ["create_app"]

"""The drawing page and JSON API of ``digitnet serve``, and the live lab of ``digitnet lab``.

:mod:`digitnet.web.service` turns API requests into predictions (no HTTP in it);
:mod:`digitnet.web.app` wires it into a Starlette application with the page in ``static/``.
:mod:`digitnet.web.lab` serves the training lab (:mod:`digitnet.lab`) the same way.
"""

from __future__ import annotations

from digitnet.web.app import create_app
from digitnet.web.lab import create_lab_app

__all__ = ["create_app", "create_lab_app"]

"""``python -m digitnet`` is the ``digitnet`` command."""

import sys

from digitnet.cli import main

sys.exit(main())

"""``python -m gatekeeper_tools.cli``: the ``gatekeeper`` command without the installed script."""

import sys

from gatekeeper_tools.cli import main

sys.exit(main())

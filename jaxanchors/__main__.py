"""``python -m jaxanchors``: the command line of :mod:`jaxanchors.cli`."""

import sys

from jaxanchors.cli import main

sys.exit(main())

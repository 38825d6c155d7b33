"""``python -m callcenter`` runs the command line."""

import sys

from callcenter.cli import main

sys.exit(main())

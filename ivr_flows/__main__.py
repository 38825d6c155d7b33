"""Run ``python -m ivr_flows check FILE...``."""

import sys

from .check import main

sys.exit(main())

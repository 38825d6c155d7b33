"""``python -m faq``: the FAQ command line (same as ``callcenter faq``)."""

from __future__ import annotations

import sys

from faq.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main(prog="python -m faq"))

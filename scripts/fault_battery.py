#!/usr/bin/env python3
"""Fault battery: runs the installed dptrain (beside this python) through ~90 faults a user
can meet and reports `N held, N defects, N hangs`. Run with the venv's python:
`.venv/bin/python scripts/fault_battery.py [-k PATTERN] [-j N] [--json FILE]`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fault_battery.main import main  # noqa: E402  (the package beside this script)

if __name__ == "__main__":
    sys.exit(main())

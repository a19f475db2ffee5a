"""``python -m dptrain``: the dptrain command, for environments where it is not installed."""
import sys

from .cli import main

sys.exit(main())

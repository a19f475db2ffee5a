"""The closest valid name for a mistyped one, for the one line of a usage error."""
from __future__ import annotations

import difflib


def did_you_mean(word, choices) -> str:
    """' (did you mean X?)' for the closest of ``choices``, or '' when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""

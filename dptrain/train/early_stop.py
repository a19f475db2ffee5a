"""--stop-at-accuracy A: end the run after the first evaluation whose test accuracy reaches
A (after an epoch, or within one with --eval-every-steps), as a run that ran out of epochs
ends (final checkpoint, --save-weights, exit 0).

The test accuracy is all-reduced over the ranks (evaluate_shares), so every rank takes the
same decision after the same epoch and posts the same collectives.
"""
from __future__ import annotations


def reached(cfg, result: dict, say) -> bool:
    """True when --stop-at-accuracy is set and this evaluation's test accuracy is at least it."""
    target = cfg.stop_at_accuracy
    accuracy = result.get("test_accuracy")
    if target is None or accuracy is None or not accuracy >= target:
        return False
    where = (f"at step {result['steps']} (within epoch {result['epochs']})"
             if result.get("within_epoch") else
             f"after epoch {result['epochs']} (step {result['steps']})")
    say(f"stopping: test accuracy {accuracy:.4f} >= --stop-at-accuracy {target:g} {where}",
        flush=True)
    return True

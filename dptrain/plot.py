"""``dptrain plot``: loss and accuracy against epoch from a metrics JSONL file (matplotlib)."""
from __future__ import annotations

import json

from .errors import UsageError


def _save(fig, out: str) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write ({exc.strerror})") from None
    finally:
        plt.close(fig)


def read_metrics(path: str) -> list[tuple[int, object]]:
    """(line number, JSON value) of every non-blank line; one that is not JSON is named with
    the file (exit 2)."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        out.append((number, json.loads(line)))
                    except (ValueError, RecursionError):
                        raise UsageError(f"{path}: line {number}: not JSON") from None
    except FileNotFoundError:
        raise UsageError(f"{path}: no such metrics file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    return out


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# what a plotted line must hold (docs/metrics.md): finite, in range, or it cannot be drawn
_PLOTTED = {"epoch": lambda v: 0 <= v <= 1e9, "loss": lambda v: 0 <= v < float("inf"),
            "accuracy": lambda v: 0 <= v <= 1}


def _plotted_records(path: str, lines: list) -> list[dict]:
    """The epoch and eval lines, each checked: a wrong one is exit 2 naming file and line."""
    records = []
    for number, r in lines:
        if not isinstance(r, dict):
            raise UsageError(f"{path}: line {number}: not a metrics record (a JSON object)")
        if r.get("type") not in ("epoch", "eval"):
            continue                                   # run and step lines are not drawn
        for key, ok in _PLOTTED.items():
            if not (_number(r.get(key)) and ok(r[key])):
                raise UsageError(f"{path}: line {number}: {key!r} must be a number in range, "
                                 f"got {str(r.get(key))[:40]!r}")
        records.append(r)
    return records


def plot_metrics(path: str, out: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'dptrain[plots]'") from None
    records = _plotted_records(path, read_metrics(path))
    curves = {"training batches": [r for r in records if r.get("type") == "epoch"]}
    for split in ("test", "train"):                 # evaluations (docs/metrics.md)
        rows = [r for r in records if r.get("type") == "eval" and r.get("split") == split]
        if rows:
            curves[f"{split} set"] = rows
    if not curves["training batches"]:
        raise UsageError(f"{path}: no epoch metrics to plot (docs/metrics.md, type \"epoch\")")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for label, rows in curves.items():
        xs = [r["epoch"] for r in rows]
        ax_loss.plot(xs, [r["loss"] for r in rows], marker="o", label=label)
        ax_acc.plot(xs, [r["accuracy"] for r in rows], marker="o", label=label)
    positive = all(r["loss"] > 0 for rows in curves.values() for r in rows)
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log" if positive else "linear", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, out)


COLORS = {"forward": "#4c72b0", "backward": "#dd8452", "update": "#55a868", "wait": "#c44e52",
          "comm": "#8172b3", "step": "#cccccc"}


def plot_trace(path: str, out: str) -> None:
    """A lane per rank and kind of work: compute (forward, backward, update, waiting) and
    communication (each bucket's reduction from post to completion)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'dptrain[plots]'") from None
    from .parallel.trace import load
    try:
        events = [e for e in load(path) if isinstance(e, dict) and e.get("ph") == "X"
                  and all(_number(e.get(k)) and 0 <= e[k] <= 1e15 for k in ("ts", "dur"))
                  and _number(e.get("pid"))]
        ranks = sorted({e["pid"] for e in events})
    except FileNotFoundError:
        raise UsageError(f"{path}: no such trace file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise UsageError(f"{path}: not a dptrain trace (Chrome trace-event JSON)") from None
    if not events:
        raise UsageError(f"{path}: the trace holds no events")
    lanes = [(r, tid) for r in ranks for tid in (0, 1)]
    fig, ax = plt.subplots(figsize=(14, 1.0 + 0.7 * len(lanes)))
    for y, (rank, tid) in enumerate(lanes):
        for cat, color in COLORS.items():
            spans = [(e["ts"] / 1e3, e["dur"] / 1e3) for e in events
                     if e["pid"] == rank and e.get("tid") == tid and e.get("cat") == cat]
            if spans:
                ax.broken_barh(spans, (y - 0.35, 0.7), facecolors=color, edgecolor="none")
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([f"rank {r} {'compute' if t == 0 else 'comm'}" for r, t in lanes])
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_title(f"dptrain timeline: {path}")
    ax.legend(handles=[Patch(color=c, label=k) for k, c in COLORS.items() if k != "step"],
              loc="upper right", ncol=5, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, out)

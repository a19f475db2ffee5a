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


def read_metrics(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise UsageError(f"{path}: no such metrics file") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: line {exc.lineno}: not JSON") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def plot_metrics(path: str, out: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("dptrain plot needs matplotlib: pip install 'dptrain[plots]'") from None
    records = [r for r in read_metrics(path) if isinstance(r, dict)
               and all(_number(r.get(k)) for k in ("epoch", "loss", "accuracy"))]
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
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
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
        raise UsageError("dptrain plot needs matplotlib: pip install 'dptrain[plots]'") from None
    from .parallel.trace import load
    try:
        events = [e for e in load(path) if isinstance(e, dict) and e.get("ph") == "X"
                  and all(_number(e.get(k)) for k in ("ts", "dur")) and e.get("pid") is not None]
        ranks = sorted({e["pid"] for e in events})
    except FileNotFoundError:
        raise UsageError(f"{path}: no such trace file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError, AttributeError):
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

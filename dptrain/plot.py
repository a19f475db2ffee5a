"""``dptrain plot``: loss and accuracy against epoch from a metrics JSONL file (matplotlib)."""
from __future__ import annotations

import json

from .errors import UsageError


def read_metrics(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise UsageError(f"{path}: no such metrics file") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: line {exc.lineno}: not JSON") from None


def plot_metrics(path: str, out: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("dptrain plot needs matplotlib: pip install 'dptrain[plots]'") from None
    records = [r for r in read_metrics(path) if "epoch" in r and "loss" in r]
    if not records:
        raise UsageError(f"{path}: no epoch metrics to plot")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split in sorted({r.get("split", "train batches") for r in records}):
        rows = [r for r in records if r.get("split", "train batches") == split and "step" in r]
        if split == "train batches":       # keep the per-epoch lines, not the per-step ones
            rows = [r for r in rows if "samples_per_s" in r]
        xs = [r["epoch"] for r in rows]
        ax_loss.plot(xs, [r["loss"] for r in rows], marker="o", label=split)
        ax_acc.plot(xs, [r["accuracy"] for r in rows], marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write ({exc.strerror})") from None
    finally:
        plt.close(fig)

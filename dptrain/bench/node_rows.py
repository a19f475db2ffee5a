"""The columns a multi-rank row of ``dptrain bench --ranks`` adds to the weak-scaling report:
the planner's predicted step beside the measured one, and the per-node figures the workers
measured (bench/node_links.py), as medians over the rounds.

The prediction is the planner's own model (parallel/step_model.py through each schedule's
``simulate``): per-layer compute times measured here, on one rank, and the link that the
run's workers measured over all their ranks. An ``auto`` row shows what auto's planner
itself predicted, in that run, for the schedule it chose.
"""
from __future__ import annotations

import statistics

from ..parallel import SCHEDULES


class StepPredictor:
    """Predicted steps of one model at one batch per rank (layer times measured once)."""

    def __init__(self, args):
        self.args, self._times = args, None

    def times(self):
        if self._times is None:
            from .. import backend, models
            from .predict import measure_layer_times
            backend.set_threads(self.args.threads)
            shape = (tuple(int(d) for d in self.args.input_shape.split("x"))
                     if getattr(self.args, "input_shape", None) else None)
            model = models.get(self.args.model, shape, seed=0)
            self._times = measure_layer_times(model, self.args.batch_size, steps=3)
        return self._times

    def step_ms(self, n: int, sync: str, bucket_mb, runs: list[dict]) -> float | None:
        times = self.times()
        if n == 1:
            return sum(times.fwd) * 1e3 + sum(times.bwd) * 1e3 + sum(times.upd) * 1e3
        if sync == "auto":
            auto = runs[-1].get("auto") or {}
            return (auto.get("predicted_step_ms") or {}).get(auto.get("sync"))
        link = (runs[-1].get("topology") or {}).get("job_link")
        if sync not in SCHEDULES or not link:
            return None                       # independent: no exchange to predict
        from ..comm.emulated import AlphaBeta
        from ..parallel.predict import auto_fc_layers, simulate
        gb = self.args.batch_size * n
        cap = int((bucket_mb if bucket_mb is not None else self.args.bucket_mb) * 2**20)
        ab = AlphaBeta(link["alpha_us"] / 1e6, link["bandwidth_bps"])
        return simulate(times, n, ab, sync, cap, auto_fc_layers(times, gb), gb)["step_s"] * 1e3


def node_fields(runs: list[dict]) -> dict:
    """nodes, hosts, links and bytes each node sent per timed step (median over rounds)."""
    tops = [r["topology"] for r in runs if r.get("topology")]
    if not tops:
        return {}
    last = tops[-1]
    per_node = []
    for i, node in enumerate(last["per_node"]):
        entry = {k: node[k] for k in ("node", "host", "ranks", "intra_link")}
        nets = [t["per_node"][i]["net"] for t in tops if t["per_node"][i].get("net")]
        if nets:
            entry["tx_bytes_per_step"] = statistics.median(n["tx_bytes_per_step"] for n in nets)
            entry["rx_bytes_per_step"] = statistics.median(n["rx_bytes_per_step"] for n in nets)
            entry["interfaces"] = nets[-1]["interfaces"]
        else:
            entry["tx_bytes_per_step"] = entry["rx_bytes_per_step"] = None
        per_node.append(entry)
    return {"nodes": last["nodes"], "hosts": last["hosts"], "node_of_rank": last["node_of_rank"],
            "job_link": last["job_link"], "inter_node_link": last["inter_node_link"],
            "per_node": per_node}


def _link_text(link: dict | None) -> str:
    if not link:
        return "-"
    bw = link["bandwidth_bps"]
    bw_text = f"{bw / 1e9:.3g} Gbit/s" if bw >= 1e9 else f"{bw / 1e6:.3g} Mbit/s"
    return f"{bw_text}, {link['alpha_us']:.3g} us"


def node_lines(row: dict) -> list[str]:
    """The indented lines under a multi-rank row of the table."""
    if "nodes" not in row:
        return []
    lines = [f"      {row['nodes']} node(s); job link {_link_text(row['job_link'])}; "
             f"inter-node {_link_text(row['inter_node_link'])}"]
    for n in row["per_node"]:
        sent = (f"sent {n['tx_bytes_per_step'] / 2**20:.3f} MB/step, received "
                f"{n['rx_bytes_per_step'] / 2**20:.3f}" if n["tx_bytes_per_step"] is not None
                else "interface counters unreadable")
        lines.append(f"      node {n['node']} {n['host']} ranks {','.join(map(str, n['ranks']))}: "
                     f"intra-node {_link_text(n['intra_link'])}; {sent}")
    return lines

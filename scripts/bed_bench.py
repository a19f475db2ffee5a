#!/usr/bin/env python3
"""The multi-node bed's table of docs/performance.md: link x layout x model x schedule.

For each link (a name the bed's shaping command understands: 100mbit, 1gbit, unshaped), it
runs the shaping command, then for each layout (NODESxRANKS: 2x1, 2x2) and model one
``dptrain bench --ranks P --launcher "LAUNCHER -ppn RANKS" --json``, and prints one markdown
row per schedule: measured step, the planner's predicted step, exposed communication, the
bytes each node sent per step (its interfaces' counters; the largest node) and the
inter-node link dptrain's probe measured.

    python scripts/bed_bench.py --launcher "mpiexec -f hosts" \\
        --shape "tc-wrapper {link}" --wrap "./on-head.sh"

--launcher and --wrap are split like a shell would and run without one; {link} in --shape
is replaced by the link's name. Nothing is shaped without --shape (then --links only labels
the rows). The schedules default to every registered one, plus auto.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

HEADER = ("| link | nodes x ranks | model | schedule | step ms | predicted ms | exposed ms "
          "| MB sent per node per step | inter-node link (probe) |")


def default_schedules() -> str:
    from dptrain.parallel.schedules import registry
    return ",".join(registry.names() + ("auto",))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--launcher", required=True, help="the bed's launcher, without -n or -ppn")
    p.add_argument("--per-node-flag", default="-ppn", help="how the launcher takes ranks per "
                   "node (MPICH: -ppn; srun: --ntasks-per-node)")
    p.add_argument("--shape", help="command that sets every node's link to {link}")
    p.add_argument("--wrap", default="", help="prefix of each dptrain command (e.g. the bed's "
                   "way to run a command in its head namespace)")
    p.add_argument("--links", default="100mbit,1gbit,unshaped")
    p.add_argument("--layouts", default="2x1,2x2", help="NODESxRANKS, comma separated")
    p.add_argument("--models", default="thesis-cnn,vgg-cifar,mlp-wide")
    p.add_argument("--schedules", default=None, help="as bench --schedules (default: every "
                   "registered schedule, and auto)")
    p.add_argument("--reductions", default="auto", help="as bench --reductions "
                   "(flat,hierarchical: a row of each)")
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--bucket-mb", default="0.5")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json-out", help="also write every bench report here (a JSON list)")
    return p.parse_args(argv)


def bench_command(args, nodes: int, per_node: int, model: str) -> list[str]:
    launcher = f"{args.launcher} {args.per_node_flag} {per_node}" if args.per_node_flag \
        else args.launcher
    return [*shlex.split(args.wrap), sys.executable, "-m", "dptrain.cli", "bench",
            "--ranks", str(nodes * per_node), "--launcher", launcher, "--model", model,
            "--schedules", args.schedules, "--reductions", args.reductions,
            "--batch-size", str(args.batch_size),
            "--bucket-mb", str(args.bucket_mb), "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--rounds", str(args.rounds), "--no-torch", "--json"]


def table_rows(link: str, layout: str, report: dict) -> list[str]:
    out = []
    for r in report["rows"]:
        if r["ranks"] == 1:
            continue
        sched = r["sync"] + (f"={r['auto']['sync']}" if r.get("auto", {}).get("sync") else "")
        pred = f"{r['predicted_step_ms']:.1f}" if r.get("predicted_step_ms") is not None else "-"
        sent = [n["tx_bytes_per_step"] for n in r.get("per_node", [])
                if n.get("tx_bytes_per_step") is not None]
        sent_text = f"{max(sent) / 2**20:.2f}" if sent else "-"
        inter = r.get("inter_node_link")
        inter_text = f"{inter['bandwidth_bps'] / 1e6:.0f} Mbit/s" if inter else "-"
        out.append(f"| {link} | {layout} | {report['model']} | {sched} | {r['step_ms']:.1f} | "
                   f"{pred} | {r['exposed_ms']:.1f} | {sent_text} | {inter_text} |")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    args.schedules = args.schedules or default_schedules()
    layouts = [tuple(int(v) for v in lay.split("x")) for lay in args.layouts.split(",")]
    reports, failed = [], 0
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for link in args.links.split(","):
        if args.shape:
            subprocess.run(shlex.split(args.shape.replace("{link}", link)), check=True)
        for nodes, per_node in layouts:
            for model in args.models.split(","):
                cmd = bench_command(args, nodes, per_node, model)
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
                if res.returncode != 0:
                    failed += 1
                    print(f"| {link} | {nodes}x{per_node} | {model} | failed: "
                          f"{res.stderr.strip().splitlines()[-1:]} |||||", flush=True)
                    continue
                report = json.loads(res.stdout.strip().splitlines()[-1])
                reports.append({"link": link, "layout": f"{nodes}x{per_node}", **report})
                for line in table_rows(link, f"{nodes}x{per_node}", report):
                    print(line, flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(reports, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line of the fault battery: pick cases, run them (one at a time, or -j N), print a
table and `N held, N defects, N hangs`; exit 1 unless every case held."""
from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from .cases import all_cases
from .runner import STOP, Result, run_case


def _table(results: list[Result]) -> str:
    rows = [f"{'case':<44} kind {'verdict':<7} {'s':>6}  reason"]
    for r in results:
        rows.append(f"{r.name:<44} {r.kind:>4} {r.verdict:<7} {r.seconds:6.1f}  {r.reason}")
    return "\n".join(rows)


def summary(results: list[Result]) -> str:
    count = {v: sum(r.verdict == v for r in results) for v in ("held", "defect", "hang")}
    return f"{count['held']} held, {count['defect']} defects, {count['hang']} hangs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fault_battery.py", allow_abbrev=False,
                                     description=__doc__)
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("-k", metavar="PATTERN", help="only cases whose name matches (regex)")
    parser.add_argument("-j", type=int, default=1, metavar="N", help="cases run at once")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="run each N times")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep each case's directory")
    args = parser.parse_args(argv)
    cases = [c for c in all_cases() if not args.k or re.search(args.k, c.name)]
    if args.list:
        for c in cases:
            print(f"{c.kind}  {c.name}")
        return 0
    cases = [c for c in cases for _ in range(args.repeat)]
    # SIGTERM ends the battery as Ctrl-C does, so each case's finally kills its processes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results: list[Result] = []
    pool = ThreadPoolExecutor(max_workers=max(1, args.j))
    try:
        for result in pool.map(lambda c: run_case(c, args.keep), cases):
            results.append(result)
            print(f"{result.verdict:<7} {result.seconds:6.1f}s  {result.name}"
                  f"  {result.reason}", flush=True)
    except KeyboardInterrupt:
        STOP.set()            # each running case raises, and its finally kills its processes
        print("interrupted; the cases run so far:", file=sys.stderr)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    print()
    print(_table(results))
    print(summary(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in results], f, indent=1)
    return 0 if results and all(r.verdict == "held" for r in results) \
        and len(results) == len(cases) else 1

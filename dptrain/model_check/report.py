"""The text report of ``dptrain check``: a line per layer, the rank check, the summary, a
verdict that names what failed."""
from __future__ import annotations


def _errors_text(row) -> str:
    if "raised" in row:
        return f"raised {row['raised']}"
    return ", ".join(f"{name} {err:.1e}" for name, err in row["errors"].items())


def report(args, shape, classes, layers, ranks, summary, passed) -> str:
    lines = [f"dptrain check: {args.model} on {'x'.join(map(str, shape))} inputs, {classes} classes",
             "",
             f"backprop: each layer against central finite differences (float64, batch "
             f"{args.batch_size}, relative error < {args.tol:g})"]
    for r in layers:
        verdict = "ok" if r["ok"] else "FAILED"
        lines.append(f"  {r['index']:>3}  {r['layer'][:40]:<40}  {verdict:<6}  {_errors_text(r)}")
    lines.append("")
    if "skipped" in ranks:
        lines.append(f"ranks: skipped ({ranks['skipped']})")
    elif "failed" in ranks:
        lines.append(f"ranks: FAILED: {ranks['failed']}")
    else:
        verdict = "ok" if ranks["ok"] else "FAILED"
        lines.append(f"ranks: 1 against 2, {ranks['steps']} steps of {ranks['dataset']} in float64: "
                     f"largest relative difference {ranks['largest']:.1e} over {ranks['arrays']} "
                     f"arrays (at most {ranks['rtol']:g}): {verdict}")
        if ranks["differing"]:
            lines.append(f"  differing arrays: {', '.join(ranks['differing'])} (named "
                         "<layer>.<param>: layer numbers as above)")
    lines += ["", str(summary), ""]
    if passed:
        lines.append("check: passed")
    else:
        bad = [f"layer {r['index']} {r['layer']}" for r in layers if not r["ok"]]
        if not ranks.get("ok", True):
            bad.append("1 against 2 ranks")
        lines.append("check: FAILED: " + "; ".join(bad))
    return "\n".join(lines)

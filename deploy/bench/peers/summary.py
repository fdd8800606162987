"""Summarises peers.sh results: medians and ranges over the rounds, latency
added over the direct run of the same round, and ratios to direct and to
Model Router. Usage: summary.py RESULTS "direct nginx modelrouter portkey litellm"
"""

import statistics
import sys
from collections import defaultdict

NAMES = {
    "direct": "direct (mock)",
    "nginx": "nginx (relaying alone)",
    "modelrouter": "Model Router up",
    "portkey": "Portkey",
    "litellm": "LiteLLM",
}


def num(v):
    return None if v == "-" else float(v)


def main(path, targets):
    summary = defaultdict(dict)  # (round, target) -> fields
    rates = defaultdict(dict)  # (round, target) -> rate name -> (r, p50, p90, p99, err)
    for line in open(path):
        f = line.split()
        key = (f[0], f[1])
        if f[2] == "summary":
            summary[key] = dict(
                rps=num(f[3]), requests=num(f[4]), errors=num(f[5]), cpu=num(f[6]),
                idle=num(f[7]), loaded=num(f[8]), ttfb=num(f[9]), ttfb_errors=num(f[10]),
            )
        else:
            rates[key][f[2]] = [num(x) for x in f[3:8]]
    rounds = sorted({r for r, _ in summary}, key=int)

    def spread(values, fmt="{:.0f}"):
        values = [v for v in values if v is not None]
        if not values:
            return "–"
        med = statistics.median(values)
        if len(values) == 1 or min(values) == max(values):
            return fmt.format(med)
        return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"

    def per_round(target, fn):
        out = []
        for r in rounds:
            try:
                out.append(fn(r, target))
            except (KeyError, TypeError, ZeroDivisionError):
                out.append(None)
        return out

    print(f"{len(rounds)} rounds; median (range). Latency added = the target's percentile minus direct's at the same rate in the same round.\n")
    print("| | req/s at saturation | × direct | Model Router ÷ it | CPU µs/request | RSS idle MB | RSS after MB | errors at saturation | streamed requests failed (of 300) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in targets:
        s = lambda r, t=t: summary[(r, t)]
        print(
            f"| {NAMES.get(t, t)} | {spread(per_round(t, lambda r, t: s(r)['rps']))}"
            f" | {spread(per_round(t, lambda r, t: s(r)['rps'] / summary[(r, 'direct')]['rps']), '{:.2f}')}"
            f" | {spread(per_round(t, lambda r, t: summary[(r, 'modelrouter')]['rps'] / s(r)['rps']), '{:.1f}×')}"
            f" | {spread(per_round(t, lambda r, t: s(r)['cpu']))}"
            f" | {spread(per_round(t, lambda r, t: s(r)['idle']))}"
            f" | {spread(per_round(t, lambda r, t: s(r)['loaded']))}"
            f" | {spread(per_round(t, lambda r, t: s(r)['errors']))}"
            f" | {spread(per_round(t, lambda r, t: s(r)['ttfb_errors']))} |"
        )
    print()
    print("| | added p50 / p90 / p99 ms at 200 req/s | at 1,000 req/s | p50 / p99 ms at 80% of its saturation | streaming first byte added ms |")
    print("|---|---|---|---|---|")
    for t in targets:
        cells = []
        for rate in ("rate_200", "rate_1000"):
            parts = []
            for i, _ in ((1, "p50"), (2, "p90"), (3, "p99")):
                parts.append(spread(per_round(t, lambda r, t, i=i, rate=rate: rates[(r, t)][rate][i] - rates[(r, "direct")][rate][i]), "{:.2f}"))
            if all(p == "–" for p in parts):
                cells.append("cannot hold it")
            else:
                cells.append(" / ".join(parts))
        sustained = per_round(t, lambda r, t: rates[(r, t)]["rate_sustained"][0])
        cells.append(
            f"{spread(per_round(t, lambda r, t: rates[(r, t)]['rate_sustained'][1]), '{:.2f}')} / "
            f"{spread(per_round(t, lambda r, t: rates[(r, t)]['rate_sustained'][3]), '{:.2f}')} at {spread(sustained)} req/s"
        )
        cells.append(spread(per_round(t, lambda r, t: summary[(r, t)]["ttfb"] - summary[(r, "direct")]["ttfb"]), "{:.2f}"))
        print(f"| {NAMES.get(t, t)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split())

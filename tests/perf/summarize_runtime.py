#!/usr/bin/python3
"""Summarize bench_future's JSON: medians per case, the issue's targets and ratios to baselines."""
import json
import sys


def main(path):
    with open(path) as f:
        data = json.load(f)
    med = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"]
        ns = b["cpu_time"] if b.get("time_unit") == "ns" else None
        if ns is None:
            scale = {"us": 1e3, "ms": 1e6, "s": 1e9}[b["time_unit"]]
            ns = b["cpu_time"] * scale
        if b["run_name"].startswith("run_blocking"):
            ns = b["real_time"] * ({"ns": 1, "us": 1e3, "ms": 1e6}[b["time_unit"]])
        per = ns
        if "items_per_second" in b:
            per = 1e9 / b["items_per_second"]
        med[name] = (per, b.get("allocs"), b.get("tasks"))

    ctx = data.get("context", {})
    print("# Runtime core microbenchmarks\n")
    print(f"Host: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs, "
          f"date {ctx.get('date', '?')}, build type {ctx.get('library_build_type', '?')} (Google Benchmark library).\n")
    print("| case | ns per op (median) | allocs/op | tasks/op |")
    print("|---|---:|---:|---:|")
    for name, (ns, a, t) in med.items():
        fa = "" if a is None else f"{a:.2f}"
        ft = "" if t is None else f"{t:.2f}"
        print(f"| {name} | {ns:.2f} | {fa} | {ft} |")

    def g(n):
        return med.get(n, (float("nan"),))[0]

    print("\n## Targets (issue #2) and ratios\n")
    print("| measure | Reef | target | Seastar 25.05 anchor | verdict |")
    print("|---|---:|---:|---:|---|")
    rows = [
        ("ready `then`", g("future_then_ready"), 1.0, 1.03),
        ("unready chain link (100 links)", g("future_unready_chain<100>"), 25.0, 29.0),
        ("ready coroutine await", g("coroutine_await_ready"), 12.0, 15.3),
        ("empty coroutine", g("coroutine_empty"), None, 13.5),
        ("coroutine maybe_yield", g("coroutine_maybe_yield"), None, 14.3),
    ]
    for label, v, target, anchor in rows:
        verdict = "" if target is None else ("met" if v <= target else f"MISSED ({v:.2f} > {target})")
        t = "" if target is None else f"≤ {target}"
        print(f"| {label} | {v:.2f} ns | {t} | {anchor} ns | {verdict} |")
    std = g("baseline_std_future_handoff")
    reef = g("future_promise_handoff")
    ratio = std / reef if reef else float("nan")
    print(f"| promise→future hand-off vs std::promise/std::future | {reef:.2f} ns vs {std:.2f} ns "
          f"= {ratio:.1f}x faster | ≥ 20x | | {'met' if ratio >= 20 else 'MISSED'} |")
    for links in (5, 100):
        a = g(f"baseline_asio_post_chain<{links}>")
        r = g(f"future_unready_chain<{links}>")
        print(f"| chain of {links}, per link, vs Asio post chain | {r:.2f} ns vs {a:.2f} ns = {a / r:.1f}x faster | | | |")


if __name__ == "__main__":
    main(sys.argv[1])

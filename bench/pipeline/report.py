"""The Markdown report, the targets and the plot."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.pipeline.common import APP, CONNECTIONS, GROUP, NOOP, OPEN_LOOP_CONNECTIONS, OURS
from bench.pipeline.sections.messages import message_lines
from bench.pipeline.sections.metrics import metrics_lines


def median_load(loads: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median throughput among a server's saturation rounds."""
    return sorted(loads, key=lambda x: x["throughput"])[len(loads) // 2]


def median_throughput(results: dict[str, Any], name: str) -> float:
    return float(statistics.median(x["throughput"] for x in results["saturation"][name]))


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    if "saturation" in results:
        lines += http_lines(results)
    if results.get("e2e"):
        lines.append("")
        lines.append("End to end (HTTP in -> router -> no-op consumer; wrk burst, then drain):")
        lines.append("")
        lines.append("| routers | workers | events | seconds | events/s | worker RSS MB |")
        lines.append("|---:|---:|---:|---:|---:|---:|")
        for e in results["e2e"]:
            lines.append(
                f"| {e['routers']} | {e['workers']} | {e['events']:,} | {e['seconds']:.1f} | "
                f"{e['events_per_second']:,.0f}{'' if e['finished'] else ' (unfinished)'} | "
                f"{e['worker_rss_peak']:.0f} |"
            )
    lines += router_lines(results)
    if "backlog" in results:
        b = results["backlog"]
        lines.append("")
        lines.append(
            f"Worker memory while a backlog of {b['events']:,} events drains "
            f"({b['events_per_second']:,.0f} events/s): RSS at 10% / 50% / 90% drained "
            f"{b['rss_at_10'] or 0:.0f} / {b['rss_at_50'] or 0:.0f} / {b['rss_at_90'] or 0:.0f} "
            f"MB, peak {b['rss_peak'] or 0:.0f} MB."
        )
    if results.get("parser"):
        lines.append("")
        lines.append("Parser on one core (`bench/parse_bench.py`, same run):")
        lines.append("")
        lines.append("```")
        lines += results["parser"]
        lines.append("```")
    lines += message_lines(results)
    lines += pinned_lines(results)
    lines += metrics_lines(results)
    lines += roles_lines(results)
    lines += scaling_lines(results)
    if "saturation" in results:
        lines.append("")
        lines.append("Targets (issue 5), from this run:")
        lines.append("")
        lines += [f"- {line}" for line in targets(results)]
    lines += drain_targets(results)
    for note in results["notes"]:
        lines.append("")
        lines.append(f"Note: {note}")
    return "\n".join(lines) + "\n"


def http_lines(results: dict[str, Any]) -> list[str]:
    """The ingress against its baselines: saturation, CPU, fixed rates, delivery."""
    lines: list[str] = []
    noop = median_throughput(results, NOOP)
    lines.append(
        f"Saturation: {results['tool']}, 1 thread, {CONNECTIONS} connections, the 2.6 KB OCR XML "
        f"seed; median of {len(results['saturation'][NOOP])} interleaved round(s)."
    )
    lines.append("")
    lines.append(
        "| server | req/s | x no-op | p50 ms | p99 ms | p99.9 ms | non-2xx | errors | RSS MB |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, loads in results["saturation"].items():
        mid = median_load(loads)
        rss = max((x["rss_peak"] or 0) for x in loads)
        lines.append(
            f"| {name} | {mid['throughput']:,.0f} | {mid['throughput'] / noop:.2f} | "
            f"{_ms(mid['p50'])} | {_ms(mid['p99'])} | {_ms(mid['p999'])} | "
            f"{sum(x['non_2xx'] for x in loads)} | {sum(x['errors'] for x in loads)} | {rss:.0f} |"
        )
    lines += cpu_table(results)
    lines.append("")
    lines.append(
        f"Fixed rates (open loop, {OPEN_LOOP_CONNECTIONS} connections, latency from release; "
        "fractions of the no-op server's saturation throughput):"
    )
    lines.append("")
    lines.append(
        "| server | offered req/s | x no-op | achieved | p50 ms | p99 ms | p99.9 ms | non-2xx | "
        "dropped |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, entries in results.get("rates", {}).items():
        for e in entries:
            flag = " (saturated)" if e["saturated"] else ""
            lines.append(
                f"| {name} | {e['offered']:,.0f} | {e['fraction']:g} | "
                f"{e['throughput']:,.0f}{flag} | {_ms(e['p50'])} | {_ms(e['p99'])} | "
                f"{_ms(e['p999'])} | {e['non_2xx']} | {e['dropped']} |"
            )
    if "sustained" in results:
        s = results["sustained"]
        lines.append("")
        lines.append(
            f"Sustained saturation of our ingress: {s['throughput']:,.0f} req/s "
            f"({s['throughput'] / noop:.2f}x no-op), non-2xx {s['non_2xx']}, "
            f"RSS peak {s['rss_peak'] or 0:.0f} MB."
        )
    if "delivered" in results:
        d = results["delivered"]
        lines.append(
            f"Every acked body delivered: **{'yes' if d['ok'] else 'NO'}**. {d['bodies']:,} bodies "
            f"(in {d['messages']:,} messages) on the raw queue for {d['acked']:,} 2xx answers "
            f"(wrk stops with up to {CONNECTIONS} requests in flight, published but never "
            f"answered: at most {d['unanswered_bound']:,} more); of the "
            f"{d['acked_ids_checked']:,} acked request ids the open-loop runs recorded, "
            f"{d['acked_ids_missing']} missing; bodies differing from the seed: "
            f"{d['bodies_not_the_seed']}."
        )
    return lines


def cpu_table(results: dict[str, Any]) -> list[str]:
    """Where both cores went at saturation: CPU microseconds per request of each process."""
    rows = []
    for name, loads in results["saturation"].items():
        mid = median_load(loads)
        cpu = mid.get("cpu") or {}
        if cpu.get("server") is None:
            continue

        def us(key: str, cpu: dict[str, float | None] = cpu) -> str:
            value = cpu.get(key)
            return "-" if value is None else f"{value:.0f}"

        known = [cpu.get(k) for k in ("server", "broker", "load")]
        total = sum(v for v in known if v is not None)
        idle = cpu.get("idle_pct")
        rows.append(
            f"| {name} | {us('server')} | {us('broker')} | {us('load')} | {total:.0f} | "
            f"{'-' if idle is None else f'{idle:.0f}'} |"
        )
    if not rows:
        return []
    cores = int(results.get("cores") or os.cpu_count() or 1)  # the run's machine, if saved
    return [
        "",
        f"CPU per request at saturation, same runs (microseconds of CPU; the {cores} cores "
        f"give {cores * 1_000_000:,} per second, so a total of T allows at most "
        f"{cores * 1_000_000:,}/T req/s):",
        "",
        "| server | server | broker | load generator | total | machine idle % |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]


def router_lines(results: dict[str, Any]) -> list[str]:
    """The router-alone section: events/s and CPU per event."""
    r = results.get("router")
    if not r:
        return []
    cpu = [
        f"{label} {r[key]:.0f} us"
        for label, key in (("router", "router_cpu_us"), ("broker", "broker_cpu_us"))
        if r.get(key) is not None
    ]
    outcome = (
        f"{r['events_per_second']:,.0f} events/s; CPU per event: {', '.join(cpu)}."
        if r["finished"]
        else f"did not finish in {r['seconds']:.0f} s."
    )
    return [
        "",
        f"One router alone on a backlog of {r['bodies']:,} raw bodies ({r['messages']:,} "
        f"messages, batched as the ingress sends them under load): {outcome}",
    ]


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets, each with this run's figure and whether it is met."""

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "**not met**")

    out = []
    noop = median_throughput(results, NOOP)
    ours = median_throughput(results, OURS)
    sat = results["saturation"][OURS]
    non_2xx = sum(x["non_2xx"] + x["errors"] for x in sat)
    delivered = results.get("delivered", {}).get("ok")
    ratio = ours / noop
    out.append(
        f"durable ingest >= 0.6x no-op (aim 0.8x), zero non-2xx, every acked body delivered: "
        f"{ratio:.2f}x, {non_2xx} non-2xx/errors, delivered {delivered} - "
        f"{verdict(ratio >= 0.6 and non_2xx == 0 and bool(delivered))}"
    )
    half = next((e for e in results.get("rates", {}).get(OURS, []) if e["fraction"] == 0.5), None)
    if half is None:
        out.append(
            "ack latency p99 <= 10 ms, p99.9 <= 50 ms at half the no-op throughput: our ingress "
            "saturated below that rate - **not met**"
        )
    else:
        ok = half["p99"] <= 10 and half["p999"] <= 50 and not half["saturated"]
        out.append(
            f"ack latency p99 <= 10 ms, p99.9 <= 50 ms at half the no-op throughput "
            f"({half['offered']:,.0f} req/s): p99 {_ms(half['p99'])} ms, p99.9 "
            f"{_ms(half['p999'])} ms{' (saturated)' if half['saturated'] else ''} - {verdict(ok)}"
        )
    e2e = next((e for e in results.get("e2e", []) if e["routers"] == e["workers"] == 1), None)
    if e2e is None:
        out.append("end to end >= 3,000 events/s with 1 router + 1 worker (aim): not measured")
    else:
        rate = e2e["events_per_second"]
        out.append(
            f"end to end >= 3,000 events/s with 1 router + 1 worker (aim): {rate:,.0f} "
            f"events/s - {verdict(rate >= 3000)}"
        )
    rss = max(
        [x["rss_peak"] or 0 for x in sat] + [results.get("sustained", {}).get("rss_peak") or 0]
    )
    out.append(
        f"ingress RSS <= 100 MB under sustained saturation: {rss:.0f} MB - {verdict(rss <= 100)}"
    )
    backlog = results.get("backlog")
    if backlog and backlog["rss_at_10"] and backlog["rss_at_90"]:
        growth = backlog["rss_at_90"] - backlog["rss_at_10"]
        out.append(
            f"worker RSS flat while {backlog['events']:,} events drain: "
            f"{backlog['rss_at_10']:.0f} MB at 10%, {backlog['rss_at_90']:.0f} MB at 90% "
            f"({growth:+.1f} MB) - {verdict(growth <= 0.1 * backlog['rss_at_10'])}"
        )
    else:
        out.append("worker RSS flat while a backlog drains: not measured")
    return out


def plot(results: dict[str, Any], paths: Sequence[Path]) -> None:
    if "saturation" not in results:
        return  # latency against offered rate: the HTTP section's
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=110)
    for i, (name, entries) in enumerate(results.get("rates", {}).items()):
        if not entries:
            continue
        color = f"C{i}"
        x = [e["offered"] for e in entries]
        ax.plot(x, [e["p99"] for e in entries], "o-", color=color, label=f"{name} p99")
        ax.plot(x, [e["p50"] for e in entries], "x--", color=color, alpha=0.6, label=f"{name} p50")
        hollow = [e for e in entries if e["saturated"]]
        ax.plot(
            [e["offered"] for e in hollow],
            [e["p99"] for e in hollow],
            "o",
            markersize=11,
            markerfacecolor="none",
            color=color,
        )
    half = median_throughput(results, NOOP) / 2
    ax.axvline(half, color="grey", linestyle=":", linewidth=1)
    ax.text(
        half, 0.02, " half the no-op\n throughput", transform=ax.get_xaxis_transform(), fontsize=7
    )
    ax.axhline(10, color="grey", linestyle=":", linewidth=1)
    ax.text(
        0.01, 10, "p99 target 10 ms", transform=ax.get_yaxis_transform(), fontsize=7, va="bottom"
    )
    ax.set_yscale("log")
    ax.set_xlabel("offered load, requests/s (open loop)")
    ax.set_ylabel("latency, ms (log)")
    ax.set_title(
        f"Latency against offered rate (circled: saturated) - {results['date']}", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    plt.close(fig)


def _this(results: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in results.get("roles", []) if r["tree"] == "this checkout"), None)


def _ingress_us_per_event(results: dict[str, Any]) -> float | None:
    """Our ingress's CPU per event at saturation (per request, over the events per body)."""
    loads = results.get("saturation", {}).get(OURS)
    if not loads:
        return None
    server = (median_load(loads).get("cpu") or {}).get("server")
    per_body = results.get("events_per_body") or 1
    return None if server is None else float(server) / per_body


def roles_lines(results: dict[str, Any]) -> list[str]:
    """CPU per event of the router, the worker and the broker, as ratios to the parser's."""
    rows = results.get("roles")
    if not rows:
        return []

    def cell(row: dict[str, Any], key: str) -> str:
        value, spread = row.get(key), row.get(f"{key}_spread") or []
        if value is None:
            return "-"
        parser = row["parser_cpu_us"]
        noise = f" ({spread[0]:.0f}-{spread[1]:.0f})" if len(spread) == 2 else ""
        return f"{value:.0f}{noise} = {value / parser:.2f}x"

    first = rows[0]
    out = [
        "",
        f"CPU per event, one router and one worker (no-op consumer) taking "
        f"{first['events_per_round']:,} events through, median of {first['rounds']} "
        "interleaved round(s) (range in brackets), as a ratio to the parser's CPU per event "
        "on the same body in the same run"
        + (
            " (pinned: the router alone on one core, the parser measured on that core; the "
            "worker and the load on the other; the broker not pinned):"
            if first.get("pinned")
            else ":"
        ),
        "",
        "| checkout | parser us | router us | worker us | broker us |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        p, sp = row["parser_cpu_us"], row.get("parser_cpu_us_spread") or [0, 0]
        out.append(
            f"| {row['tree']} | {p:.0f} ({sp[0]:.0f}-{sp[1]:.0f}) | {cell(row, 'router_cpu_us')} "
            f"| {cell(row, 'worker_cpu_us')} | {cell(row, 'broker_cpu_us')} |"
        )
    beside = [r for r in rows if r.get("parser_beside_cpu_us")]
    if beside:
        out += [
            "",
            "The same ratios against the parser measured beside the pipeline (a process "
            "parsing the seed during each round"
            + (", on the router's core" if first.get("pinned") else "")
            + ", under the same load):",
            "",
            "| checkout | parser beside us | router | worker | broker |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in beside:
            b = row["parser_beside_cpu_us"]
            ratios = " | ".join(
                f"{row[k] / b:.2f}x" if row.get(k) is not None else "-"
                for k in ("router_cpu_us", "worker_cpu_us", "broker_cpu_us")
            )
            out.append(f"| {row['tree']} | {b:.0f} | {ratios} |")
    return out


def scaling_lines(results: dict[str, Any]) -> list[str]:
    """Cores per role for a target rate, from the measured CPU per event; checked here."""
    row = _this(results)
    if row is None:
        return []
    per_event = {
        "ingress": _ingress_us_per_event(results),
        "router": row.get("router_cpu_us"),
        "worker (no-op consumer)": row.get("worker_cpu_us"),
        "broker": row.get("broker_cpu_us"),
    }
    out = [
        "",
        "Cores each role needs for a target rate, from the CPU per event measured above "
        "(cores = events/s x us per event / 1,000,000; a consumer's own work comes on top of "
        "the worker's):",
        "",
        "| role | us/event | 1k events/s | 10k events/s | 50k events/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for role, us in per_event.items():
        if us is None:
            out.append(f"| {role} | not measured in this run | | | |")
            continue
        cells = " | ".join(f"{rate * us / 1e6:.1f}" for rate in (1_000, 10_000, 50_000))
        out.append(f"| {role} | {us:.0f} | {cells} |")
    known = [v for v in per_event.values() if v is not None]
    cores = int(results.get("cores") or os.cpu_count() or 1)
    checks = []
    for e in results.get("e2e", []):
        n_r, n_w = e["routers"], e["workers"]
        limits = [cores * 1e6 / sum(known)]
        if row.get("router_cpu_us"):
            limits.append(n_r * 1e6 / row["router_cpu_us"])
        if row.get("worker_cpu_us"):
            limits.append(n_w * 1e6 / row["worker_cpu_us"])
        predicted = min(limits)
        checks.append(
            f"| {n_r} | {n_w} | {predicted:,.0f} | {e['events_per_second']:,.0f} | "
            f"{e['events_per_second'] / predicted:.2f} |"
        )
    if checks:
        out += [
            "",
            f"Checked on this box ({cores} cores shared by every process): predicted "
            "end-to-end events/s = the least of the machine's cores over the summed CPU per "
            "event, and each role's processes over its own; measured in the end-to-end section:",
            "",
            "| routers | workers | predicted events/s | measured | measured / predicted |",
            "|---:|---:|---:|---:|---:|",
            *checks,
        ]
    return out


def drain_targets(results: dict[str, Any]) -> list[str]:
    """Issue 15's targets: the pipeline drains as fast as it takes in."""
    row = _this(results)
    out: list[str] = []
    parser_rate = results.get("parser_events_per_second")
    e2e = next((e for e in results.get("e2e", []) if e["routers"] == e["workers"] == 1), None)
    if e2e is not None and parser_rate:
        ratio = e2e["events_per_second"] / parser_rate
        out.append(
            f"end to end (1 router, 1 worker) >= 0.3x the parser's single-thread events/s "
            f"(aim 0.5x): {e2e['events_per_second']:,.0f} / {parser_rate:,.0f} = {ratio:.2f}x"
            f" - {'met' if ratio >= 0.3 else '**not met**'}"
        )
    if row is not None:
        p = row["parser_cpu_us"]
        for key, label, limit in (
            ("router_cpu_us", "router CPU per event <= 2x the parser's", 2.0),
            ("worker_cpu_us", "worker CPU per event (no-op consumer) <= 1x the parser's", 1.0),
        ):
            if row.get(key) is not None:
                ratio = row[key] / p
                verdict = "met" if ratio <= limit else "**not met**"
                out.append(f"{label}: {ratio:.2f}x - {verdict}")
        if row.get("broker_cpu_us") is not None:
            out.append(
                f"broker CPU per event (raw in, event through, acks): {row['broker_cpu_us']:.0f} us"
            )
    if not out:
        return []
    return ["", "Targets (issue 15), from this run:", "", *[f"- {line}" for line in out]]


def pinned_lines(results: dict[str, Any]) -> list[str]:
    """The ingress and the no-op server, each alone on one core; targets 0.6x and 1.6x.

    Each row also gives its rounds as ratios to the no-op's in the same round (x no-op / x
    the no-op's CPU): on a shared machine a round's two servers met the same noise.
    """
    p = results.get("pinned")
    if not p or NOOP not in p or OURS not in p:
        return []
    noop, ours = p[NOOP], p[OURS]
    ratio = ours["throughput"] / noop["throughput"]
    out = [
        "",
        f"Each server alone on CPU {p['server_cpu']}, wrk on CPU {p['load_cpu']} (taskset; "
        "the shared broker not pinned), median of interleaved rounds:",
        "",
        "| server | req/s | x no-op | server CPU us/req | x no-op's CPU | non-2xx | rounds |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    rows = {name: row for name, row in p.items() if isinstance(row, dict)}
    for name, row in rows.items():
        cpu, base = row["server_cpu_us"], noop["server_cpu_us"]
        cpu_cell = "-" if cpu is None else f"{cpu:.0f}"
        cpu_ratio = "-" if cpu is None or not base else f"{cpu / base:.2f}"
        out.append(
            f"| {name} | {row['throughput']:,.0f} | {row['throughput'] / noop['throughput']:.2f} "
            f"| {cpu_cell} | {cpu_ratio} | {row['non_2xx']} | {_pinned_rounds(row, noop)} |"
        )
    cpu_ok = (
        ours["server_cpu_us"] is not None
        and noop["server_cpu_us"]
        and ours["server_cpu_us"] / noop["server_cpu_us"] <= 1.6
    )
    out += [
        "",
        f"Target: >= 0.6x the no-op server on its core ({ratio:.2f}x - "
        f"{'met' if ratio >= 0.6 else '**not met**'}), server CPU per request <= 1.6x the "
        f"no-op's ({'met' if cpu_ok else '**not met**'}).",
    ]
    return out + _pinned_split(rows, noop)


def _pinned_split(rows: dict[str, dict[str, Any]], noop: dict[str, Any]) -> list[str]:
    """What the two halves of the ingress cost alone, as x the no-op's CPU per request."""
    base = noop["server_cpu_us"]
    cpus = {name: rows[name]["server_cpu_us"] for name in (APP, GROUP) if name in rows}
    if not base or len(cpus) < 2 or None in cpus.values():
        return []
    return [
        "",
        f"The halves alone, in CPU per request: our HTTP app with nothing kept "
        f"{cpus[APP] / base:.2f}x the no-op's; a handler that only makes the body durable "
        f"(our group commit) {cpus[GROUP] / base:.2f}x.",
    ]


def _pinned_rounds(row: dict[str, Any], noop: dict[str, Any]) -> str:
    """Each round as x no-op / x the no-op's CPU, against the no-op's run of that round."""
    cpus, base_cpus = row.get("server_cpus_us"), noop.get("server_cpus_us")
    if not cpus or not base_cpus:  # a run saved before the rounds were kept
        return "-"
    cells = []
    for ours, theirs, cpu, base_cpu in zip(
        row["throughputs"], noop["throughputs"], cpus, base_cpus, strict=True
    ):
        cpu_ratio = "-" if cpu is None or not base_cpu else f"{cpu / base_cpu:.2f}"
        cells.append(f"{ours / theirs:.2f}/{cpu_ratio}")
    return " ".join(cells)

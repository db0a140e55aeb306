#!/usr/bin/env python3
"""Summarizes scripts/bench results (results.jsonl) as Markdown: medians of
the runs, ratios per run (relay / ceiling and relay / Alertmanager from runs
made back to back, then the median of those ratios), and the targets.

  report.py OUT/results.jsonl
"""

import json
import statistics
import sys


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def f(x, nd=0):
    if x is None:
        return "–"
    if isinstance(x, float) and nd:
        return f"{x:,.{nd}f}"
    return f"{round(x):,}" if isinstance(x, (int, float)) else str(x)


def verdict(ok):
    return "met" if ok else "**missed**"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    by = {}
    for r in rows:
        by.setdefault(r["bench"], []).append(r["data"])
    out = []
    m = (by.get("machine") or [{}])[0]
    out.append(f"Machine: {m.get('nproc')} cores, {m.get('cpu')}, {round(m.get('mem_total_kb', 0) / 2**20)} GiB, "
               f"kernel {m.get('kernel')}, load average at start {' '.join(m.get('loadavg_at_start', []))} "
               f"(shared with other builds: numbers are noisy; ratios come from back-to-back runs). "
               f"{m.get('wrk')}; {m.get('alertmanager')}; {m.get('rustc')}; {m.get('python')}.")
    out.append("")
    targets = []

    ing = by.get("ingest", [])
    if ing:
        cfg = (by.get("config") or [{}])[0]
        out.append(f"### 1. Ingest (wrk, 2 threads, {cfg.get('ingest_conns', '?')} connections, "
                   f"{cfg.get('ingest_secs', '?')} s per run; medians of the runs)")
        out.append("")
        out.append("| mode | relay 202/s | ceiling req/s | Alertmanager req/s | relay/ceiling | relay/Alertmanager | relay p99 | relay, no chat matching | CPU µs/request: relay / no match / ceiling / Alertmanager | runs |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for mode in ("keepalive", "close"):
            runs = sorted({r["run"] for r in ing if r["mode"] == mode})
            rel, cei, am, rc, ra, p99, nm = [], [], [], [], [], [], []
            cpu = {"relay": [], "relay_nomatch": [], "ceiling": [], "alertmanager": []}
            for run in runs:
                got = {r["server"]: r for r in ing if r["mode"] == mode and r["run"] == run}
                for server, v in cpu.items():
                    if "cpu_us_per_req" in got.get(server, {}):
                        v.append(got[server]["cpu_us_per_req"])
                rel_rps = got["relay"]["s202"] / (got["relay"]["duration_us"] / 1e6) if "relay" in got else None
                rel.append(rel_rps)
                p99.append(got["relay"]["p99_us"] / 1000 if "relay" in got else None)
                if "relay_nomatch" in got:
                    nm.append(got["relay_nomatch"]["s202"] / (got["relay_nomatch"]["duration_us"] / 1e6))
                if "ceiling" in got:
                    cei.append(got["ceiling"]["rps"])
                    rc.append(rel_rps / got["ceiling"]["rps"] if rel_rps else None)
                if "alertmanager" in got:
                    am.append(got["alertmanager"]["rps"])
                    ra.append(rel_rps / got["alertmanager"]["rps"] if rel_rps else None)
            label = "keep-alive" if mode == "keepalive" else "`Connection: close`"
            out.append(f"| {label} | {f(med(rel))} | {f(med(cei))} | {f(med(am))} | {f(med(rc), 2)} | "
                       f"{f(med(ra), 2)} | {f(med(p99), 1)} ms | {f(med(nm)) + '/s' if nm else '–'} | "
                       f"{' / '.join(f(med(v), 1) if v else '–' for v in cpu.values())} | {len(runs)} |")
            if mode == "keepalive":
                targets.append(("ingest keep-alive >= 50% of the ceiling", f"{f(med(rc), 2)} x ceiling",
                                med(rc) is not None and med(rc) >= 0.5))
                targets.append(("ingest keep-alive >= 5x Alertmanager", f"{f(med(ra), 2)} x Alertmanager",
                                med(ra) is not None and med(ra) >= 5))
            else:
                targets.append(("ingest with Connection: close >= 10k/s", f"{f(med(rel))}/s",
                                med(rel) is not None and med(rel) >= 10000))
        dup = sum(r.get("s2xx_other", 0) for r in ing if r["server"] == "relay")
        wrapped = sum(r.get("wrapped", 0) for r in ing if r["server"] == "relay")
        out.append("")
        out.append(f"Relay answers other than 202 in all runs: {dup} duplicates (200; signature table wrapped "
                   f"{wrapped} times), {sum(r['non2xx'] for r in ing if r['server'] == 'relay')} non-2xx.")
        out.append("")

    floor = (by.get("e2e_floor") or [None])[0]
    e2e = (by.get("e2e") or [None])[0]
    if e2e:
        out.append("### 2. End to end latency and fan-out")
        out.append("")
        out.append("| path | rate | events | p50 | p90 | p99 | max | 202 p50 / p99 |")
        out.append("|---|---|---|---|---|---|---|---|")
        if floor:
            out.append(f"| harness floor: python -> sink directly | {f(floor['achieved_rate'])}/s | {floor['delivered']} | "
                       f"{floor['e2e_ms']['p50']} ms | {floor['e2e_ms']['p90']} ms | {floor['e2e_ms']['p99']} ms | {floor['e2e_ms']['max']} ms | – |")
        out.append(f"| webhook -> relay -> sink | {f(e2e['achieved_rate'])}/s | {e2e['delivered']}/{e2e['sent']} | "
                   f"{e2e['e2e_ms']['p50']} ms | {e2e['e2e_ms']['p90']} ms | {e2e['e2e_ms']['p99']} ms | {e2e['e2e_ms']['max']} ms | "
                   f"{e2e['ack_ms']['p50']} / {e2e['ack_ms']['p99']} ms |")
        for x in by.get("e2e_extra", []):
            out.append(f"| webhook -> relay -> sink, lower rate | {f(x['achieved_rate'])}/s | {x['delivered']}/{x['sent']} | "
                       f"{x['e2e_ms']['p50']} ms | {x['e2e_ms']['p90']} ms | {x['e2e_ms']['p99']} ms | {x['e2e_ms']['max']} ms | "
                       f"{x['ack_ms']['p50']} / {x['ack_ms']['p99']} ms |")
        out.append("")
        out.append(f"At {f(e2e['rate'])}/s the sink received {f(e2e.get('arrival_rate'))} deliveries/s; median latency of the "
                   f"first 10% of events {e2e.get('e2e_p50_first10pct_ms')} ms, of the last 10% {e2e.get('e2e_p50_last10pct_ms')} ms.")
        sc = (by.get("single_chat") or [None])[0]
        if sc:
            out.append(f"One chat's delivery rate ({sc['events']} events posted at once in {sc['post_s']} s, one webhook chat, "
                       f"no rate limit in the way): **{f(sc['deliveries_per_s'])} deliveries/s** ({sc['delivered']} in {sc['span_s']} s).")
        out.append("")
        targets.append((f"end to end p99 < 5 ms at {f(e2e['rate'])} events/s", f"p99 {e2e['e2e_ms']['p99']} ms",
                        e2e["e2e_ms"]["p99"] is not None and e2e["e2e_ms"]["p99"] < 5))
    fan = by.get("fanout", [])
    if fan:
        cap = (by.get("sink_capacity") or [{}])[0]
        vals = [r["deliveries_per_s"] for r in fan]
        out.append(f"Fan-out: {fan[0]['events']} events x {fan[0]['deliveries'] // max(1, fan[0]['events'])} chats: "
                   f"**{f(med(vals))} deliveries/s** (median of {len(vals)}: {', '.join(f(v) for v in vals)}); "
                   f"the sink alone takes {f(cap.get('rps'))} req/s from wrk on as many connections.")
        out.append("")

    rv = (by.get("reload_validate") or [None])[0]
    ri = (by.get("reload_idle") or [None])[0]
    rl = (by.get("reload_under_load") or [None])[0]
    if ri:
        out.append("### 3. Reload")
        out.append("")
        w = rl["wrk"] if rl else {}
        fails = (w.get("non2xx", 0) + w.get("err_connect", 0) + w.get("err_read", 0) + w.get("err_write", 0)
                 + w.get("err_timeout", 0)) if rl else None
        out.append(f"{f(ri['rules'])} rules ({f(rv['bytes'] if rv else None)} bytes of TOML). "
                   f"`validate` of the same file (baseline: load + validate in a fresh process): {f(rv['ms'] if rv else None)} ms"
                   f"{', peak RSS ' + f(rv['maxrss_kb'] / 1024) + ' MB' if rv and 'maxrss_kb' in rv else ''}. "
                   f"`POST /-/reload` idle: median {f(ri['median_ms'])} ms (max {f(ri['max_ms'])}, {len(ri['reloads'])} runs).")
        if rl:
            out.append(f"During wrk (1 thread, 16 connections, {rl['wrk_secs']} s): {len(rl['reloads'])} reloads, "
                       f"median {f(rl['median_ms'])} ms, max {f(rl['max_ms'])} ms; wrk: {f(w['requests'])} requests, "
                       f"{f(w['s202'])} x 202, {fails} failed (non-2xx or socket errors), latency p99 {f(w['p99_us'] / 1000, 1)} ms.")
            slowest = max(ri["max_ms"], rl["max_ms"])
            targets.append((f"reload of {f(ri['rules'])} rules < 1 s", f"median {f(ri['median_ms'])} ms idle, "
                            f"{f(rl['median_ms'])} ms under load (max {f(slowest)})", rl["median_ms"] < 1000))
            targets.append(("zero failed requests during reloads", f"{fails} failed", fails == 0))
        out.append("")

    mem = {r["case"]: r for r in by.get("memory", [])}
    if mem:
        out.append("### 4. Memory (VmRSS)")
        out.append("")
        out.append("| state | RSS | peak (VmHWM) | threads |")
        out.append("|---|---|---|---|")
        names = {
            "idle_tiny": "idle, 1 chat",
            "idle_alertmanager": "reference: idle Alertmanager",
            "chats_loaded": "just started with {chats} chats",
            "chats_loaded_settled": "{chats} chats, 1 s later",
            "chats_after_idle_reloads": "{chats} chats after {reloads} idle reloads",
            "chats_after_reloads": "{chats} chats after {reloads} reloads (the last ones under wrk)",
            "chats_after_idle_reloads_arena2": "{chats} chats after {reloads} idle reloads, MALLOC_ARENA_MAX=2",
            "queued": "{deliveries} deliveries queued ({chats} chats, provider down)",
        }
        for case, name in names.items():
            if case in mem:
                r = mem[case]
                out.append(f"| {name.format(**r)} | {f(r['rss_kb'] / 1024, 1)} MB | "
                           f"{f(r['hwm_kb'] / 1024, 1) + ' MB' if 'hwm_kb' in r else '–'} | {r.get('threads', '–')} |")
        out.append("")
        if "idle_tiny" in mem:
            v = mem["idle_tiny"]["rss_kb"] / 1024
            targets.append(("RSS idle < 20 MB", f"{v:.1f} MB", v < 20))
        if "queued" in mem:
            v = mem["queued"]["rss_kb"] / 1024
            targets.append((f"RSS < 200 MB with {f(mem['queued']['deliveries'])} queued deliveries",
                            f"{v:.1f} MB (peak {mem['queued']['hwm_kb'] / 1024:.1f})", v < 200))
        if "queued" in mem:
            q = mem["queued"]
            out.append(f"Queueing took {q['post_s']} s to post the events and {q['route_wait_s']} s more until all "
                       f"deliveries were in the queues; store on disk: {q['db_bytes'] / 2**20:.0f} MiB.")
            out.append("")

    b = (by.get("backlog") or [None])[0]
    if b:
        out.append("### 5. Backlog drain")
        out.append("")
        out.append(f"{b['per_chat']} deliveries per chat x {b['chats_seen']} chats at `rate_limit = \"{f(b['rate'])}/s\"` "
                   f"(bursts of {f(b['burst'])}, so the limit allows one chat's queue to drain in "
                   f"({b['per_chat']} - {f(b['burst'])}) / {f(b['rate'])} = {b['expected_span_s']} s). "
                   f"Measured per chat (first to last arrival): median {b['span_s']['median']} s, min {b['span_s']['min']}, "
                   f"max {b['span_s']['max']} = **{b['ratio_median']} x the limit**. Sink up -> first delivery "
                   f"{b['sink_up_to_first_s']} s (the retry backoff of the failed heads), -> last {b['sink_up_to_last_s']} s; "
                   f"delivered {b['delivered']}, complete: {b['complete']}.")
        out.append("")
        r = b["ratio_median"]
        targets.append(("backlog drains at the configured rate (not faster, not slower)",
                        f"{r} x the time the limit allows", r is not None and 0.95 <= r <= 1.15))

    if targets:
        out.append("### Targets")
        out.append("")
        out.append("| target | measured | |")
        out.append("|---|---|---|")
        for name, got, ok in targets:
            out.append(f"| {name} | {got} | {verdict(ok)} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Load generator and measurements for the whole-binary benchmarks
(scripts/bench). Python stdlib only; loopback only. Every loop is bounded by
a count and a deadline. Each subcommand prints one JSON object on stdout.

  load.py post    --url URL --secret S --base B --count N [--concurrency C]
      N distinct signed post_created webhooks as fast as C keep-alive
      connections allow (closed loop).
  load.py rate    --url URL --secret S --base B --rate R --duration D
                  --sink SINK --path /hook/NAME [--direct]
      Open loop: one webhook every 1/R s for D s on a pool of connections,
      then waits for the sink to have them all and matches arrivals by post
      id: end-to-end latency = sink arrival - the moment the POST was
      written. --direct posts the same bodies straight to the sink (the
      harness floor: what this measuring setup costs without the relay).
  load.py wait-sink --sink SINK --count N --timeout T
  load.py drain   --sink SINK --chats N --per-chat M --rate R [--burst B]
      Per chat: first to last arrival vs what the rate limit allows.
  load.py queued  --admin URL --count N --timeout T
      Polls /api/status until the queues hold N deliveries.
  load.py reload  --admin URL [--times K]
      POSTs /-/reload K times, one after the other; durations in ms.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import re
import sys
import time
import urllib.request

sys.path.insert(0, __import__("os").path.dirname(__file__))
import gen  # noqa: E402

CL = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def hostport(url):
    m = re.match(r"http://([^/:]+):(\d+)(/.*)?$", url)
    if not m:
        sys.exit(f"not an http://HOST:PORT URL: {url}")
    return m.group(1), int(m.group(2)), m.group(3) or "/"


def webhook_request(host, port, path, secret, post_id, parts):
    body = gen.body(post_id, parts)
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nX-Discourse-Event: post_created\r\n"
        f"X-Discourse-Event-Type: post\r\nX-Discourse-Event-Id: {post_id}\r\n"
        f"X-Discourse-Instance: {gen.FORUM}\r\n"
        f"X-Discourse-Event-Signature: sha256={sig}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def roundtrip(r, w, req):
    w.write(req)
    head = await r.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = CL.search(head)
    if m and int(m.group(1)):
        await r.readexactly(int(m.group(1)))
    return status


def get_json(url, timeout=10, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def get_text(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# ---------------------------------------------------------------- post


async def post_many(url, secret, base, count, concurrency, deadline):
    host, port, path = hostport(url)
    parts = gen.body_parts()
    next_id = iter(range(base + 1, base + count + 1))
    statuses = {}
    t0 = time.monotonic()

    async def worker():
        r, w = await asyncio.open_connection(host, port)
        try:
            for pid in next_id:
                if time.monotonic() > deadline:
                    statuses["deadline"] = statuses.get("deadline", 0) + 1
                    return
                s = await roundtrip(r, w, webhook_request(host, port, path, secret, pid, parts))
                statuses[s] = statuses.get(s, 0) + 1
        finally:
            w.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"sent": count, "statuses": {str(k): v for k, v in statuses.items()},
            "accepted": statuses.get(202, 0), "elapsed_s": round(time.monotonic() - t0, 3)}


def cmd_post(a):
    deadline = time.monotonic() + a.timeout
    print(json.dumps(asyncio.run(post_many(a.url, a.secret, a.base, a.count, a.concurrency, deadline))))


# ---------------------------------------------------------------- rate


async def open_loop(url, secret, base, rate, duration, conns, deadline):
    host, port, path = hostport(url)
    parts = gen.body_parts()
    total = int(rate * duration)
    reqs = [webhook_request(host, port, path, secret, base + 1 + i, parts) for i in range(total)]
    sent_ns = [0] * total
    ack_ns = [0] * total
    late = [0] * total
    statuses = {}
    q = asyncio.Queue()

    async def worker():
        r, w = await asyncio.open_connection(host, port)
        try:
            while True:
                i = await q.get()
                if i is None:
                    return
                sent_ns[i] = time.time_ns()
                s = await roundtrip(r, w, reqs[i])
                ack_ns[i] = time.time_ns()
                statuses[s] = statuses.get(s, 0) + 1
        finally:
            w.close()

    workers = [asyncio.create_task(worker()) for _ in range(conns)]
    start = time.monotonic()
    i = 0
    while i < total and time.monotonic() < deadline:
        now = time.monotonic()
        due = min(total, int((now - start) * rate) + 1)
        while i < due:
            late[i] = now - (start + i / rate)
            q.put_nowait(i)
            i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
    for _ in workers:
        q.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.monotonic() - start
    backlog = [sent_ns[k] for k in range(total) if sent_ns[k] == 0]
    return {
        "total": total, "elapsed_s": elapsed, "statuses": statuses, "sent_ns": sent_ns,
        "ack_ns": ack_ns, "unsent": len(backlog),
        "late_over_5ms": sum(1 for x in late if x > 0.005),
    }


def cmd_rate(a):
    deadline = time.monotonic() + a.duration + 30
    url = f"{a.sink}{a.path}" if a.direct else a.url
    run = asyncio.run(open_loop(url, a.secret, a.base, a.rate, a.duration, a.conns, deadline))
    # Wait (bounded) until the sink has every delivery for this path.
    want = run["total"] - run["unsent"]
    t_end = time.monotonic() + a.wait
    arrivals = {}
    while True:
        dump = get_text(f"{a.sink}/_dump")
        arrivals = {}
        for line in dump.splitlines():
            t, p, pid = line.split(" ")
            if p == a.path:
                arrivals.setdefault(int(pid), int(t))
        if len(arrivals) >= want or time.monotonic() > t_end:
            break
        time.sleep(0.2)
    e2e, ack = [], []
    for i in range(run["total"]):
        pid = a.base + 1 + i
        if run["sent_ns"][i] and pid in arrivals:
            e2e.append((arrivals[pid] - run["sent_ns"][i]) / 1e6)
        if run["sent_ns"][i] and run["ack_ns"][i]:
            ack.append((run["ack_ns"][i] - run["sent_ns"][i]) / 1e6)
    # Does delivery keep up? The arrival rate, and latency early vs late.
    n10 = max(1, len(e2e) // 10)
    first10, last10 = sorted(e2e[:n10]), sorted(e2e[-n10:])
    times = sorted(arrivals[a.base + 1 + i] for i in range(run["total"]) if (a.base + 1 + i) in arrivals)
    span = (times[-1] - times[0]) / 1e9 if len(times) > 1 else 0
    e2e.sort()
    ack.sort()
    out = {
        "rate": a.rate, "duration_s": a.duration, "sent": want, "delivered": len(e2e),
        "achieved_rate": round(want / run["elapsed_s"], 1) if run["elapsed_s"] else None,
        "late_over_5ms": run["late_over_5ms"],
        "statuses": {str(k): v for k, v in run["statuses"].items()},
        "e2e_ms": {f"p{p}": round(pct(e2e, p), 3) if e2e else None for p in (50, 90, 99)}
        | {"max": round(e2e[-1], 3) if e2e else None},
        "ack_ms": {f"p{p}": round(pct(ack, p), 3) if ack else None for p in (50, 90, 99)},
        "arrival_rate": round(len(times) / span, 1) if span else None,
        "e2e_p50_first10pct_ms": round(pct(first10, 50), 3) if e2e else None,
        "e2e_p50_last10pct_ms": round(pct(last10, 50), 3) if e2e else None,
    }
    print(json.dumps(out))


# ---------------------------------------------------------------- misc


def cmd_wait_sink(a):
    t_end = time.monotonic() + a.timeout
    while True:
        s = get_json(f"{a.sink}/_stats")
        if s["count"] >= a.count or time.monotonic() > t_end:
            s["complete"] = s["count"] >= a.count
            print(json.dumps(s))
            return
        time.sleep(0.1)


def cmd_drain(a):
    per = {}
    for line in get_text(f"{a.sink}/_dump").splitlines():
        t, p, _ = line.split(" ")
        per.setdefault(p, []).append(int(t))
    burst = a.burst if a.burst is not None else a.rate
    expected = max(0, a.per_chat - burst) / a.rate
    rows = []
    for p, ts in sorted(per.items()):
        ts.sort()
        rows.append({"chat": p, "n": len(ts), "first_ns": ts[0], "span_s": (ts[-1] - ts[0]) / 1e9})
    spans = sorted(r["span_s"] for r in rows)
    complete = [r for r in rows if r["n"] >= a.per_chat]
    out = {
        "chats_seen": len(rows), "chats_complete": len(complete), "per_chat": a.per_chat,
        "rate": a.rate, "burst": burst, "expected_span_s": round(expected, 3),
        "span_s": {"min": round(spans[0], 3) if spans else None,
                   "median": round(pct(spans, 50), 3) if spans else None,
                   "max": round(spans[-1], 3) if spans else None},
        "ratio_median": round(pct(spans, 50) / expected, 3) if spans and expected else None,
        "delivered": sum(r["n"] for r in rows),
        "first_to_last_s": round((max(r["first_ns"] + r["span_s"] * 1e9 for r in rows)
                                  - min(r["first_ns"] for r in rows)) / 1e9, 3) if rows else None,
    }
    print(json.dumps(out))


def queued_total(admin):
    s = get_json(f"{admin}/api/status", timeout=30)
    return sum(c["queue_depth"] for c in s["chats"])


def cmd_queued(a):
    t_end = time.monotonic() + a.timeout
    t0 = time.monotonic()
    while True:
        n = queued_total(a.admin)
        if n >= a.count or time.monotonic() > t_end:
            print(json.dumps({"queued": n, "complete": n >= a.count,
                              "waited_s": round(time.monotonic() - t0, 2)}))
            return
        time.sleep(0.25)


def cmd_reload(a):
    times = []
    for _ in range(a.times):
        t = time.monotonic()
        try:
            r = get_json(f"{a.admin}/-/reload", timeout=120, method="POST")
            ok = bool(r.get("ok"))
        except Exception as e:  # noqa: BLE001 - report, do not crash the bench
            ok, r = False, {"error": str(e)}
        times.append({"ms": round((time.monotonic() - t) * 1000, 1), "ok": ok})
    ms = sorted(x["ms"] for x in times)
    print(json.dumps({"reloads": times, "ok": all(x["ok"] for x in times),
                      "median_ms": pct(ms, 50), "max_ms": ms[-1]}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("post")
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--base", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=120)
    r = sub.add_parser("rate")
    r.add_argument("--url", required=True)
    r.add_argument("--secret", required=True)
    r.add_argument("--base", type=int, required=True)
    r.add_argument("--rate", type=float, required=True)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--conns", type=int, default=16)
    r.add_argument("--sink", required=True)
    r.add_argument("--path", required=True)
    r.add_argument("--direct", action="store_true")
    r.add_argument("--wait", type=float, default=30)
    w = sub.add_parser("wait-sink")
    w.add_argument("--sink", required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--timeout", type=float, required=True)
    d = sub.add_parser("drain")
    d.add_argument("--sink", required=True)
    d.add_argument("--chats", type=int, required=True)
    d.add_argument("--per-chat", type=int, required=True)
    d.add_argument("--rate", type=float, required=True)
    d.add_argument("--burst", type=int)
    q = sub.add_parser("queued")
    q.add_argument("--admin", required=True)
    q.add_argument("--count", type=int, required=True)
    q.add_argument("--timeout", type=float, required=True)
    rl = sub.add_parser("reload")
    rl.add_argument("--admin", required=True)
    rl.add_argument("--times", type=int, default=1)
    a = ap.parse_args()
    {"post": cmd_post, "rate": cmd_rate, "wait-sink": cmd_wait_sink, "drain": cmd_drain,
     "queued": cmd_queued, "reload": cmd_reload}[a.cmd](a)


if __name__ == "__main__":
    main()

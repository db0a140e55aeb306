#!/usr/bin/env python3
"""Inputs for the whole-binary benchmarks (scripts/bench): relay configs and
signed webhook bodies.

  gen.py sigs   --secret S --base B --count N --out FILE.lua
  gen.py config KIND --sink URL --out FILE.toml [--chats N] [--rate R]

Webhook bodies are the recorded fixture
tests/fixtures/webhooks/post_created_first_post.json with the post id
replaced, so every request is a distinct event (the relay deduplicates equal
bodies and equal event ids). wrk's LuaJIT has no HMAC, so `sigs` precomputes
`sha256=HMAC(secret, body)` for post ids BASE+1 .. BASE+N into a Lua file
(PREFIX .. id .. SUFFIX is the body; the Lua side builds it).

Config kinds (all: one forum, `delay = "0s"`, webhook chats at URL/hook/NAME):
  ingest   one chat `sink`, subscribed to `all`, rate limit RATE (default 100000/s)
  fanout   N chats (default 100) `c0..`, each `all` at RATE (default 1000/s)
  tenk     N chats (default 10000) x 10 rules, the generator of
           benches/route_render.rs with `thread` -> `watch` (webhook chats
           cannot thread), plus one chat `sink` on `all`
"""

import argparse
import hashlib
import hmac
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests/fixtures/webhooks/post_created_first_post.json"
FORUM = "https://forum.example.org"
SECRET_VAR = "DISCOURSE_WEBHOOK_SECRET"


def body_parts():
    raw = json.loads(FIXTURE.read_text())["raw_body"]
    marker = '"id":1001,'
    if raw.count(marker) != 1:
        sys.exit(f"{FIXTURE}: expected one {marker!r}")
    i = raw.index(marker) + len('"id":')
    return raw[:i], raw[i + len("1001"):]


def body(post_id, parts=None):
    prefix, suffix = parts or body_parts()
    return f"{prefix}{post_id}{suffix}".encode()


def sign(secret, data):
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def lua_str(s):
    # A Lua long string cannot be used safely with arbitrary content; escape.
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif o < 32 or o > 126:
            for b in ch.encode():
                out.append(f"\\{b:03d}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def cmd_sigs(a):
    parts = body_parts()
    prefix, suffix = parts
    key = a.secret.encode()
    with open(a.out, "w") as f:
        f.write(f"PREFIX = {lua_str(prefix)}\nSUFFIX = {lua_str(suffix)}\n")
        f.write(f"BASE = {a.base}\nINSTANCE = {lua_str(FORUM)}\nSIGS = {{\n")
        p, s = prefix.encode(), suffix.encode()
        for i in range(1, a.count + 1):
            mac = hmac.new(key, p + str(a.base + i).encode() + s, hashlib.sha256)
            f.write(f'"{mac.hexdigest()}",\n')
        f.write("}\n")


def head(extra=""):
    return (
        f'[discourse]\nurl = "{FORUM}"\nwebhook_secret = "${{{SECRET_VAR}}}"\n'
        f'delay = "0s"\n\n[server]\nmax_age = "1h"\n\n'
        f'[providers.hook]\nkind = "webhook"\n{extra}\n'
    )


def chat(name, sink, rate, rules='subscribe = ["all"]\n'):
    return (
        f'[[chat]]\nname = "{name}"\nprovider = "hook"\nurl = "{sink}/hook/{name}"\n'
        f'rate_limit = "{rate}"\n{rules}\n'
    )


def tenk(n, sink):
    # benches/route_render.rs::config, on the webhook provider; `thread`
    # becomes `watch` because webhook destinations return no message ids.
    out = [head(), chat("sink", sink, "100000/s")]
    for k in range(n):
        def cat(m):
            return f"cat{m % 1000}/sub{(m // 1000) % 10}"
        out.append(
            f'[[chat]]\nname = "chat-{k}"\nprovider = "hook"\nurl = "{sink}/hook/chat-{k}"\n'
            f'subscribe = ["c/{cat(k)}", "t/tag{(k * 7) % 5000}"]\n'
            f'[[chat.rule]]\nfilter = "follow"\ncategory = "{cat(k * 3 + 1)}"\n'
            f'[[chat.rule]]\ncategory = "cat{k % 1000}/**"\ntags = ["tag{(k * 11) % 5000}", "release-{k % 50}-*"]\n'
            f'[[chat.rule]]\nfilter = "watch"\ncategory = "{cat(k * 5 + 2)}"\ntags = ["tag{(k * 13) % 5000}"]\n'
            f'[[chat.rule]]\nfilter = "mute"\ntags = ["noisy{k % 100}"]\n'
            f'[[chat.rule]]\nfilter = "mute"\ncategory = "{cat(k)}"\ntags = ["spam"]\n'
            f'[[chat.rule]]\ntype = "group_mention"\ngroup = "group{k % 500}"\n'
            f'[[chat.rule]]\ntype = "group_message"\ngroup = "group{k % 500}"\n'
            f'[[chat.rule]]\nfilter = "follow"\ntags = ["announce{k % 300}"]\n\n'
        )
    return "".join(out)


def cmd_config(a):
    if a.kind == "ingest":
        text = head() + chat("sink", a.sink, a.rate or "100000/s")
    elif a.kind == "fanout":
        n = a.chats or 100
        text = head() + "".join(chat(f"c{i}", a.sink, a.rate or "1000/s") for i in range(n))
    elif a.kind == "tenk":
        text = tenk(a.chats or 10000, a.sink)
    else:
        sys.exit(f"unknown config kind {a.kind}")
    pathlib.Path(a.out).write_text(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sigs")
    s.add_argument("--secret", required=True)
    s.add_argument("--base", type=int, required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--out", required=True)
    c = sub.add_parser("config")
    c.add_argument("kind", choices=["ingest", "fanout", "tenk"])
    c.add_argument("--sink", required=True, help="base URL of the sink, e.g. http://127.0.0.1:9099")
    c.add_argument("--out", required=True)
    c.add_argument("--chats", type=int)
    c.add_argument("--rate")
    a = ap.parse_args()
    {"sigs": cmd_sigs, "config": cmd_config}[a.cmd](a)


if __name__ == "__main__":
    main()

"""The admin pane in a real browser (see scripts/ci/browser-test): login,
chats and rules, the filter, test messages, each chat's 24-hour chart,
relative times with the exact time on hover, a chat's page of recent
deliveries; screenshots at 1280 px and phone width (and of the chat page).

Starts a chat sink (records every request), the relay binary with a config
pointing at it, and headless Chromium driven over the DevTools protocol.
Usage: browser_test.py RELAY_BINARY PNG PHONE_PNG
"""

import base64
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from websockets.sync.client import connect

TOKEN = "browser-test-admin-token"
HITS = []


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Without it keep-alive clients stall ~40 ms per request (Nagle).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        HITS.append({"path": self.path, "body": self.rfile.read(n).decode(errors="replace")})
        # `/rejecting` plays a chat whose credential is wrong: a permanent
        # failure, so the message goes to the dead letters.
        rejecting = self.path == "/rejecting"
        body = b'{"error":"bad token"}' if rejecting else b'{"ok":true,"ts":"1700000000.000100"}'
        self.send_response(401 if rejecting else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def config(sink, broken=False, fixed=False):
    ops = "ops" if fixed else "rejecting"
    return f"""[discourse]
url = "https://forum.example.org"
delay = "0s"

[server]
admin_token = "${{RELAY_ADMIN_TOKEN}}"

[providers.team]
kind = "slack"
token = "${{SLACK_TOKEN}}"
api_url = "{sink}/slack"

[[chat]]
name = "support"
provider = "webhook"
url = "{sink}/support"
subscribe = ["c/support/**", "t/bug"]

[[chat]]
name = "announcements"
provider = "team"
channel = "C0ANNOUNCE"

[[chat.rule]]
filter = "follow"
category = "announcements"

[[chat]]
name = "staff-room"
provider = "webhook"
url = "{sink}/staff"
subscribe = ["all"]

[[chat.rule]]
filter = "{'wach' if broken else 'mute'}"
category = "lounge"

[[chat]]
name = "ops"
provider = "webhook"
url = "{sink}/{ops}"
subscribe = ["c/ops"]
"""


class Browser:
    """One page of headless Chromium, over the DevTools protocol."""

    def __init__(self, profile):
        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        end = time.time() + 30
        while time.time() < end and port is None:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = m.group(1)
        if port is None:
            raise RuntimeError("chromium did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        self.conn = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 << 20)
        self.ws = self.conn.__enter__()
        self.next_id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method, **params):
        self.next_id += 1
        me = self.next_id
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == me:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, js):
        r = self.call("Runtime.evaluate", expression=js, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{js}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, js, what, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if self.eval(js):
                    return
            except RuntimeError:
                pass  # navigating: the context is gone for a moment
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def goto(self, url):
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'", f"{url} to load")

    def screenshot(self, path, width, height, mobile=False):
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=mobile)
        h = self.eval("Math.ceil(document.documentElement.scrollHeight)")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=min(h, 4000),
                  deviceScaleFactor=1, mobile=mobile)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"browser-test: saved {path} ({os.path.getsize(path)} bytes)")

    def close(self):
        try:
            self.conn.__exit__(None, None, None)
        finally:
            self.proc.terminate()
            self.proc.wait(10)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"browser-test: ok: {what}")


def main():
    relay_bin, png, phone_png = sys.argv[1:4]
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sink_url = f"http://127.0.0.1:{sink.server_address[1]}"

    work = tempfile.mkdtemp(prefix="relay-browser-")
    cfg = os.path.join(work, "relay.toml")
    with open(cfg, "w") as f:
        f.write(config(sink_url))
    env = dict(os.environ, RELAY_ADMIN_TOKEN=TOKEN, SLACK_TOKEN="xoxb-browser-test", RUST_LOG="info")
    relay = subprocess.Popen(
        [relay_bin, "--log-format", "json", "serve", "--config", cfg,
         "--data-dir", os.path.join(work, "data"),
         "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = []
    admin = None
    end = time.time() + 30
    while admin is None and time.time() < end:
        line = relay.stderr.readline()
        if not line:
            break
        log.append(line)
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if v.get("fields", {}).get("message") == "listening":
            admin = v["fields"]["admin"]
    threading.Thread(target=lambda: [log.append(l) for l in relay.stderr], daemon=True).start()
    browser = None
    try:
        if admin is None:
            raise RuntimeError("relay did not start:\n" + "".join(log))
        base = f"http://{admin}"

        # A rejected reload, so the pane shows an error at file:line:col.
        with open(cfg, "w") as f:
            f.write(config(sink_url, broken=True))
        req = urllib.request.Request(f"{base}/-/reload", method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            urllib.request.urlopen(req)
            raise AssertionError("the broken config was accepted")
        except urllib.error.HTTPError as e:
            check(e.code == 400, "a broken config is rejected by POST /-/reload")
        with open(cfg, "w") as f:
            f.write(config(sink_url))

        profile = tempfile.mkdtemp(prefix="relay-chromium-")
        browser = Browser(profile)
        b = browser

        b.goto(base + "/")
        check(b.eval("!!document.querySelector('input[type=password]')"),
              "without the token, the pane asks to log in")
        b.eval(f"document.getElementById('token').value = {json.dumps(TOKEN)}")
        b.eval("document.querySelector('form button[type=submit]').click()")
        b.wait("!!document.querySelector('table.chats')", "the pane after logging in")

        chats = b.eval("[...document.querySelectorAll('tr.chat')].map(r => r.dataset.chat)")
        check(chats == ["support", "announcements", "staff-room", "ops"], f"chats shown: {chats}")
        rules = b.eval("Object.fromEntries([...document.querySelectorAll('tr.chat')].map(r => "
                       "[r.dataset.chat, [...r.querySelectorAll('ul.rules li')].map(li => li.textContent)]))")
        check(rules == {"support": ["watch c/support/**", "watch t/bug"],
                        "announcements": ["follow c/announcements"],
                        "staff-room": ["watch all", "mute c/lounge"],
                        "ops": ["watch c/ops"]}, f"rules shown: {rules}")
        system = b.eval("document.querySelector('tr[data-chat=announcements] td[data-label=\"Chat system\"]').textContent")
        check(system == "team (slack)", f"chat system shown: {system}")
        errors = b.eval("[...document.querySelectorAll('pre.errors')].map(p => p.textContent).join('\\n')")
        check(re.search(r"relay\.toml:\d+:\d+: error", errors or "") is not None,
              f"reload history shows file:line:col errors: {errors[:120]!r}")

        # Type into the filter like a user: real key input events.
        b.call("Runtime.evaluate", expression="document.getElementById('q').focus()")
        b.call("Input.insertText", text="slack")
        visible = b.eval("[...document.querySelectorAll('tr.chat')].filter(r => !r.hidden).map(r => r.dataset.chat)")
        check(visible == ["announcements"], f"filter 'slack' shows only {visible}")
        check(b.eval("document.getElementById('shown').textContent") == "1", "the count follows the filter")
        b.eval("const q = document.getElementById('q'); q.value = ''; q.dispatchEvent(new Event('input'))")
        visible = b.eval("[...document.querySelectorAll('tr.chat')].filter(r => !r.hidden).length")
        check(visible == 4, "clearing the filter shows every chat again")

        before = len(HITS)
        b.eval("document.querySelector('tr[data-chat=support] button.send-test').click()")
        b.wait("location.search.includes('sent=support') && document.readyState === 'complete'",
               "the pane after sending a test message")
        notice = b.eval("document.querySelector('p.notice').textContent")
        check(notice == "Test message queued for chat support.", f"notice: {notice}")
        end = time.time() + 15
        while time.time() < end and not any(
                h["path"] == "/support" and "Test message from discourse-relay" in h["body"]
                for h in HITS[before:]):
            time.sleep(0.1)
        got = [h for h in HITS[before:] if h["path"] == "/support"]
        check(got and "Test message from discourse-relay" in got[0]["body"],
              "the sink received the test message")
        b.eval("document.querySelector('tr[data-chat=announcements] button.send-test').click()")
        b.wait("location.search.includes('sent=announcements') && document.readyState === 'complete'",
               "the second test message")
        end = time.time() + 15
        while time.time() < end and not any(h["path"] == "/slack/chat.postMessage" for h in HITS):
            time.sleep(0.1)
        check(any(h["path"] == "/slack/chat.postMessage" and "C0ANNOUNCE" in h["body"] for h in HITS),
              "the slack chat's test message reached chat.postMessage")
        # Let the health columns catch up before the pictures.
        time.sleep(0.5)
        b.goto(base + "/")
        b.wait("!!document.querySelector('table.chats')", "the pane")

        # Each chat's row has its chart of the last 24 hours: present, laid
        # out, with a title per bar carrying the counts.
        charts = b.eval("[...document.querySelectorAll('tr.chat')].map(r => { "
                        "const s = r.querySelector('th svg.hours[role=img]'); if (!s) return null; "
                        "const box = s.getBoundingClientRect(); "
                        "return {chat: r.dataset.chat, w: box.width, h: box.height, "
                        "visible: getComputedStyle(s).visibility === 'visible' && box.width > 0 && box.height > 0, "
                        "bars: s.querySelectorAll('g.hour > title').length, "
                        "label: s.getAttribute('aria-label'), "
                        "titles: [...s.querySelectorAll('title')].map(t => t.textContent)}; })")
        check(all(c and c["visible"] for c in charts), f"a visible chart in every chat row: {charts and [(c['chat'], c['w'], c['h']) for c in charts if c]}")
        check(all(c["bars"] == 24 for c in charts), "every chart has 24 hourly bars")
        support = next(c for c in charts if c["chat"] == "support")
        check(support["label"].startswith("support: last 24 hours, 1 delivered"), f"chart summary: {support['label']}")
        check(any(re.search(r"UTC: 1 delivered, 0 retried, 0 failed$", t) for t in support["titles"]),
              "the current hour's bar title shows the test message")
        check(b.eval("!!document.querySelector('tr[data-chat=support] svg.hours rect.bar-ok')"),
              "the delivered bar is drawn")

        # Relative times read "… ago", the exact time on hover (title). The
        # relay started moments ago: wait until its start reads in seconds.
        started = b.eval("document.querySelector('header time').getAttribute('datetime')")
        b.wait("(Date.now() - Date.parse(document.querySelector('header time').getAttribute('datetime'))) > 11000",
               "the relay to be up for 11 s", timeout=20)
        b.goto(base + "/")
        b.wait("!!document.querySelector('table.chats')", "the pane")
        times = b.eval("[...document.querySelectorAll('time')].map(t => ({text: t.textContent, "
                       "title: t.getAttribute('title'), datetime: t.getAttribute('datetime')}))")
        check(any(t["text"].endswith(" ago") for t in times), f"relative times shown: {[t['text'] for t in times]}")
        check(all(t["title"] and t["title"] == t["datetime"] and not t["title"].endswith("ago") for t in times),
              "each relative time has the exact time in its title (on hover)")
        check(started in [t["title"] for t in times], f"the start time on hover: {started}")

        # A chat's name opens its page: recent deliveries with their results.
        b.eval("document.querySelector('tr[data-chat=support] a.chat-link').click()")
        b.wait("location.pathname === '/chats/support' && document.readyState === 'complete' "
               "&& !!document.querySelector('h1')", "the chat's page")
        title = b.eval("document.querySelector('h1').textContent")
        check(title == "support", f"the chat page's heading: {title}")
        rows = b.eval("[...document.querySelectorAll('tr.delivery')].map(r => r.textContent)")
        check(len(rows) == 1 and "test message requested by admin pane" in rows[0] and "sent" in rows[0],
              f"the chat page lists the test message, sent: {rows}")
        check(b.eval("(() => { const t = document.querySelector('tr.delivery time'); "
                     "return !!t && t.getAttribute('title') === t.getAttribute('datetime'); })()"),
              "the delivery's time has its exact time on hover")
        check(b.eval("(() => { const s = document.querySelector('svg.hours.big'); "
                     "return !!s && s.getBoundingClientRect().width > 200; })()"),
              "the chat page shows the 24-hour chart")
        os.makedirs(os.path.dirname(png) or ".", exist_ok=True)
        b.screenshot(os.path.join(os.path.dirname(png) or ".", "pane-chat.png"), 1280, 900)

        # A chat with a wrong credential: its test message is dead-lettered.
        # Fix the config, reload, and send it again from the pane: the chat
        # receives it once.
        b.goto(base + "/")
        b.wait("!!document.querySelector('table.chats')", "the pane")
        b.eval("document.querySelector('tr[data-chat=ops] button.send-test').click()")
        b.wait("location.search.includes('sent=ops') && document.readyState === 'complete'",
               "the pane after the ops test message")
        dead = None
        end = time.time() + 15
        while time.time() < end and dead != 1:
            req = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req) as r:
                status = json.load(r)
            dead = next(c for c in status["chats"] if c["name"] == "ops")["dead_letters"]
            time.sleep(0.1)
        check(dead == 1, "the rejected test message is a dead letter")
        with open(cfg, "w") as f:
            f.write(config(sink_url, fixed=True))
        req = urllib.request.Request(f"{base}/-/reload", method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req) as r:
            check(r.status == 200, "the fixed config reloads")
        b.goto(base + "/chats/ops/dead-letters")
        b.wait("!!document.querySelector('tr.dead-letter')", "the ops dead letters")
        reason = b.eval("document.querySelector('tr.dead-letter pre.reason').textContent")
        check("401" in reason, f"the dead letter says why: {reason[:80]!r}")
        before = len(HITS)
        b.eval("document.querySelector('tr.dead-letter form button[type=submit]').click()")
        b.wait("location.pathname === '/chats/ops/dead-letters' && document.readyState === 'complete' "
               "&& !document.querySelector('tr.dead-letter')", "the dead letter sent again")
        end = time.time() + 15
        while time.time() < end and not any(h["path"] == "/ops" for h in HITS[before:]):
            time.sleep(0.1)
        time.sleep(1.0)  # a second copy would come right behind the first
        resent = [h for h in HITS[before:] if h["path"] == "/ops"]
        check(len(resent) == 1 and "Test message from discourse-relay" in resent[0]["body"],
              f"the fixed chat received the resent message once ({len(resent)})")

        b.goto(base + "/")
        b.wait("!!document.querySelector('table.chats')", "the pane")

        b.screenshot(png, 1280, 900)
        b.screenshot(phone_png, 390, 844, mobile=True)
        # At phone width the charts stay inside the screen and headings whole.
        fits = b.eval("[...document.querySelectorAll('svg.hours')].every(s => "
                      "s.getBoundingClientRect().right <= window.innerWidth)")
        check(fits, "at phone width every chart fits the screen")
        print("browser-test: all checks passed")
    except Exception:
        print("browser-test: relay log:\n" + "".join(log[-40:]), file=sys.stderr)
        raise
    finally:
        if browser is not None:
            browser.close()
        relay.terminate()
        relay.wait(15)
        sink.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

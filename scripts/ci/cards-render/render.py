"""Draws the Teams and Webex default cards with Microsoft's Adaptive Cards
renderer in headless Chromium (see scripts/ci/cards-render/render).

For each KIND=VERSION argument, every body tests/cards.rs wrote to
target/cards/KIND.*.json is parsed as an Adaptive Card of at most VERSION
and rendered; a parse or validation event from the renderer, or a card
without its title, button or avatar, fails. Each picture is saved beside
its JSON (target/cards/KIND.CHAT.FIXTURE.png), the first post's also as
OUT_DIR/KIND.png. Chromium has no network here: the forum's images
(avatar, logo) are drawn as local placeholders of the same size.

Usage: render.py OUT_DIR KIND=VERSION...
"""

import base64
import glob
import html
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from browser_test import Browser  # noqa: E402  (one DevTools client for both)

HERE = os.path.dirname(os.path.abspath(__file__))
CARDS = "target/cards"
NAMES = {"teams": "Microsoft Teams", "webex": "Webex"}


def placeholder(alt, round_):
    """An SVG data URI standing in for a forum image: initials on a colour."""
    letter = html.escape((alt or "?").strip()[:1].upper() or "?")
    shape = ('<circle cx="48" cy="48" r="48" fill="#e36b37"/>' if round_
             else '<rect width="96" height="96" rx="16" fill="#0088cc"/>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96">{shape}'
           f'<text x="48" y="64" font-size="48" font-family="sans-serif" fill="#fff" '
           f'text-anchor="middle">{letter}</text></svg>')
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def offline(node):
    """`node` with every Image's URL replaced by a placeholder."""
    if isinstance(node, list):
        return [offline(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: offline(v) for k, v in node.items()}
    if out.get("type") == "Image" and isinstance(out.get("url"), str):
        out["url"] = placeholder(out.get("altText"), out.get("style") == "person")
    return out


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    out_dir, kinds = sys.argv[1], sys.argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="relay-cards-chromium-")
    browser = Browser(profile)
    drawn = 0
    try:
        browser.goto("file://" + os.path.join(HERE, "render.html"))
        for arg in kinds:
            kind, version = arg.split("=")
            files = sorted(glob.glob(f"{CARDS}/{kind}.*.json"))
            check(files, f"no {CARDS}/{kind}.*.json: run cargo test --test cards first")
            for path in files:
                request = json.load(open(path))
                card = request["body"]["attachments"][0]["content"]
                label = os.path.basename(path)[:-5]
                shown_as = f"{NAMES[kind]} · Adaptive Card {version} · {label}"
                r = browser.eval(
                    f"renderCard({json.dumps(offline(card))}, {json.dumps(shown_as)}, {json.dumps(version)})")
                check(not r["events"], f"{label}: the renderer reports: {r['events']}")
                title = card["body"][1]["text"]
                shown = title.split("[", 1)[-1].split("](", 1)[0]
                check(shown and shown in r["text"], f"{label}: the title {shown!r} is not drawn: {r['text']!r}")
                check(r["buttons"] == 1, f"{label}: {r['buttons']} buttons drawn, not 1")
                check(r["images"] >= 1, f"{label}: no avatar drawn")
                check(r["height"] > 120, f"{label}: only {r['height']} px drawn")
                browser.wait("[...document.images].every(i => i.complete && i.naturalWidth > 0)",
                             f"{label}'s images")
                png = path[:-5] + ".png"
                shot = browser.call("Page.captureScreenshot", format="png",
                                    clip=dict(r["clip"], scale=1))["data"]
                with open(png, "wb") as f:
                    f.write(base64.b64decode(shot))
                if ".first_post" in label and not os.path.exists(f"{out_dir}/{kind}.png.done"):
                    shutil.copy(png, f"{out_dir}/{kind}.png")
                    open(f"{out_dir}/{kind}.png.done", "w").close()
                print(f"cards-render: ok: {label}: parsed as {version} with no events, "
                      f"drawn {int(r['height'])} px high, saved {png}")
                drawn += 1
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
        for done in glob.glob(f"{out_dir}/*.png.done"):
            os.remove(done)
    print(f"cards-render: {drawn} passed, 0 failed")


if __name__ == "__main__":
    main()

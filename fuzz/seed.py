#!/usr/bin/env python3
"""Adds the seed inputs of the fuzz targets to fuzz/corpus/<target>/.

The corpus is kept minimized (fuzz/run-short --cmin); the seeds are where it
started from. Re-run after adding fixtures or configs, then minimize:
  fuzz/run-short --cmin
Inputs come from tests/fixtures/webhooks (raw_body), examples/*.toml,
tests/configs/**/*.toml and the templates below.
"""
import glob
import hashlib
import json
import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")

# Same order as EVENTS in fuzz_targets/webhook.rs.
EVENTS = [
    "post_created", "post_edited", "post_destroyed", "post_recovered",
    "topic_created", "topic_edited", "topic_destroyed", "topic_recovered",
    "ping", "user_created", "accepted_solution", "reviewable_created",
    "category_created", "", "Post_Created",
]


def put(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def webhook():
    bodies = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/webhooks/*.json"))):
        with open(path) as f:
            fx = json.load(f)
        name = fx["headers"].get("X-Discourse-Event", "")
        sel = EVENTS.index(name) if name in EVENTS else 15
        body = fx["raw_body"].encode()
        bodies[os.path.basename(path)[:-5]] = (sel, body)
        # no instance header, and with the forum URL (bits 4-5 = 1), with an id
        put("webhook", bytes([sel]) + body)
        put("webhook", bytes([sel | 0x10 | 0x40]) + body)
    # A topic event teaching tags/PM groups, then a post in that topic.
    for topic, post in [
        ("topic_created", "post_created_first_post"),
        ("topic_created_private_message", "post_created_private_message"),
        ("topic_edited_category_changed", "post_edited"),
    ]:
        if topic in bodies and post in bodies:
            t, p = bodies[topic], bodies[post]
            put("webhook", bytes([t[0]]) + t[1] + b"\xff" + bytes([p[0]]) + p[1])
    # The second forum.
    if "post_created_subcategory" in bodies:
        s, b = bodies["post_created_subcategory"]
        put("webhook", bytes([s | 0x30]) + b)
    for small in [b'{"post":{"id":"x"}}', b'{"post":', b'[]', b'{"a":1,"b":2}', b'{"topic":{}}',
                  b'{"post":{"id":1,"topic_id":1}}']:
        put("webhook", b"\x00" + small)


def config():
    paths = glob.glob(os.path.join(ROOT, "examples/*.toml"))
    paths += glob.glob(os.path.join(ROOT, "tests/configs/**/*.toml"), recursive=True)
    for path in sorted(paths):
        with open(path, "rb") as f:
            put("config", f.read())
    for small in [
        '[discourse]\nurl = "https://f.example"\n',
        '[discourse]\nurl = "https://f.example"\n[[chat]]\nname = "c"\nprovider = "console"\n'
        'subscribe = ["c/{a,{b,{c,d}}}/**"]\n',
        '[discourse]\nurl = "https://f.example"\nwebhook_secret = "${A}${"\n',
        '[discourse]\nurl = "https://f.example"\n[templates]\nx = "{{> x}}"\n',
        '[discourse]\nurl = "https://f.example"\n[server]\nbody_limit = 18446744073709551615\n',
        '[discourse]\nurl = "https://f.example"\ndelay = "99999999999999999999s"\n',
    ]:
        put("config", small.encode())


def template():
    texts = []
    for path in glob.glob(os.path.join(ROOT, "examples/*.toml")) + glob.glob(
        os.path.join(ROOT, "tests/configs/**/*.toml"), recursive=True
    ):
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except Exception:
            continue
        for t in (doc.get("templates") or {}).values():
            if isinstance(t, str):
                texts.append(t)
    texts += [
        "{{topic.title}} by @{{post.username}}: {{post.url}}",
        '{"text": {{json topic.title}}}',
        '{"t": "{{topic.title}}", "tags": [{{#each topic.tags}}"{{name}}"{{#unless @last}},{{/unless}}{{/each}}]}',
        "{{#if post}}{{excerpt post.cooked 50}}{{else}}{{topic.title}}{{/if}}",
        "{{#each topic.tags}}{{#with this}}{{lookup ../topic 'title'}}{{/with}}{{/each}}",
        "{{truncate topic.title 5}} {{date post.created_at}} {{bold topic.title}}",
        '{{#*inline "x"}}{{> x}}{{/inline}}{{> x}}',
        "{{{post.raw}}}",
        "{{&post.raw}}",
        "{{#if (eq topic.category.path \"support/rust\")}}{{link post.url topic.title}}{{/if}}",
    ]
    hostile = ["<!channel> @everyone <b>x</b>", "bob\u202e", "\"}]\\u0000", "*_~`>&<", "a\nb\r\n",
               "support/**", "x" * 300, "category_changed"]
    for t in texts:
        put("template", t.encode())
        put("template", ("\0".join([t] + hostile)).encode())


if __name__ == "__main__":
    webhook()
    config()
    template()
    for t in ["webhook", "config", "template"]:
        print(t, len(os.listdir(os.path.join(OUT, t))))

#!/usr/bin/env python3
"""Adds the seed inputs of the fuzz targets to fuzz/corpus/<target>/.

The corpus is kept minimized (fuzz/run-short --cmin); the seeds are where it
started from. Re-run after adding fixtures or configs, then minimize:
  fuzz/run-short --cmin
Inputs come from tests/fixtures/webhooks (raw_body), examples/*.toml,
tests/configs/**/*.toml, the templates below and, for `classify`, the
hostile answers of tests/provider_hostile.rs.
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
    "topic_created", "topic_edited", "topic_destroyed", "chat_message_trashed",
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
    # Family bodies under the family names EVENTS has (and a chat message
    # created, then trashed: the lifecycle of an item).
    for name, event in [
        ("chat_message_created", "chat_message_trashed"),
        ("reviewable_transitioned_to_approved", "reviewable_created"),
        ("reviewable_created_queued_post", "reviewable_created"),
        ("user_added_to_group", "user_created"),
        ("user_approved", "user_created"),
    ]:
        if name in bodies:
            put("webhook", bytes([EVENTS.index(event) | 0x10]) + bodies[name][1])
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


# Chats of src/fuzzing/classify.rs's config, by index (0xFF = every chat).
CLASSIFY_CHATS = {"discord": 6, "telegram": 4, "slack-api": 2, "matrix": 21, "zulip": 23,
                  "mastodon": 25, "messenger": 26, "hipchat": 27, "mattermost-api": 9,
                  "lark": 14, "dingtalk": 15, "rocketchat": 24}


def classify():
    """Platform answers: `[chat] [status u16 BE] headers 0xFF body`, from
    the hostile table of tests/provider_hostile.rs."""
    def answer(chat, status, headers, body):
        head = "".join(f"{k}: {v}\n" for k, v in headers).encode()
        return bytes([chat]) + status.to_bytes(2, "big") + head + b"\xff" + body

    statuses = [200, 201, 204, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 599, 0, 999]
    retry_after = ["1e300", "-5", "NaN", "inf", "abc", "", "Thu, 01 Jan 1970 00:00:00 GMT",
                   "Fri, 31 Dec 9999 23:59:59 GMT", "340282366920938463463374607431768211456",
                   "18446744073709551615", "7", "1.5", "Sun, 06 Nov 1994 08:49:37 GMT"]
    resets = [("X-RateLimit-Reset", "9223372036854775807"), ("X-RateLimit-Remaining", "0"),
              ("X-FloodControl-Reset", "-1"), ("x-ogw-ratelimit-reset", "18446744073709551615"),
              ("X-Business-Use-Case-Usage",
               '{"1":[{"estimated_time_to_regain_access":18446744073709551615}]}'),
              ("X-RateLimit-Reset", "9999-12-31T23:59:59Z")]
    bodies = [
        b'{"retry_after":1e300}',
        b'{"message":"You are being rate limited.","retry_after":1e300,"global":true}',
        b'{"parameters":{"retry_after":1e300}}',
        b'{"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":1e300}}',
        b'{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":18446744073709551615}',
        b'{"retry-after":-1}',
        b'{"result":"error","code":"RATE_LIMIT_HIT","msg":"x","retry-after":1e300}',
        b'{"errcode":130101,"errmsg":"send too fast","wait":1e300}',
        b'{"success":false,"error":"You must wait 99999999999999999999999 seconds before trying this endpoint again."}',
        b'{"error":{"message":"(#613) limited","type":"OAuthException","code":613}}',
        b'{"error":{"message":"Invalid OAuth access token.","code":190,"error_subcode":460}}',
        b'{"ok":false,"error":"channel_not_found","error_code":400,"description":"Bad Request"}',
        b'{"ok":true,"channel":"C1","ts":"1.2","result":{"message_id":5},"id":"1","event_id":"$e"}',
        b"\xff\xfe\x00garbage\xc3\x28\xa0\xa1",
        b"line one\nline two\r\n\x1b[31mred\x00",
        b"null", b"[]", b"", b"{}", b'{"ok":"yes","result":5}', b'{"id":[]}',
        b"<html><body>502 Bad Gateway</body></html>",
        b"[" * 10000 + b"]" * 10000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"description":"' + "\u00e9\\n".encode() * 20000 + b'","id":"' + b"x" * 5000 + b'"}',
    ]
    for status in statuses:
        put("classify", answer(0xFF, status, [], b""))
        put("classify", answer(0xFF, status, [("Retry-After", "1e300")], b'{"retry_after":1e300}'))
    for v in retry_after:
        for status in [429, 503]:
            put("classify", answer(0xFF, status, [("Retry-After", v)], b""))
    put("classify", answer(0xFF, 429, resets, b""))
    for body in bodies:
        for status in [200, 429, 500, 400]:
            put("classify", answer(0xFF, status, [], body))
    for name, i in CLASSIFY_CHATS.items():
        for body in bodies[:12]:
            put("classify", answer(i, 429, resets, body))
    # Headers without a 0xFF: the rest is all body.
    put("classify", b"\xff\x01\xad" + b'{"retry_after":1e300}')
    put("classify", b"\x00")


if __name__ == "__main__":
    webhook()
    config()
    template()
    classify()
    for t in ["webhook", "config", "template", "classify"]:
        print(t, len(os.listdir(os.path.join(OUT, t))))

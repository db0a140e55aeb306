#!/usr/bin/env python3
"""Checks Google Chat request bodies against Google's own discovery document.

    check_google.py DIR_OR_FILE...   every googlechat.*.json request
    check_google.py --self-test      samples/googlechat.{valid,invalid}.*.json

The document is chat.v1.json as Google ships it in the google-api-python-client
package (googleapiclient/discovery_cache/documents/), installed with pip
--no-deps: only the file is read, the client is never imported. Every body the
relay sends Google Chat (a webhook's or the API's create, an edit's patch) is a
`Message`. Discovery schemas list every property, so a name the schema does not
have is an error, as are a wrong JSON type, a value outside an enum, a badly
formed int64/date-time/bytes string, and an output-only (readOnly) field, which
Google drops: a field the relay means to send must not be one. Deprecated
fields are reported as warnings.

Prints one line per request (ok, FAIL) and exits 1 if any failed.
"""

import base64
import datetime
import importlib.util
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discovery():
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("google-api-python-client is not installed (pip install --no-deps)")
    root = Path(list(spec.submodule_search_locations)[0])
    doc = json.loads((root / "discovery_cache/documents/chat.v1.json").read_text())
    return doc


INT = re.compile(r"^-?\d+$")


def pointer(at, key):
    return f"{at}/{str(key).replace('~', '~0').replace('/', '~1')}"


class Checker:
    def __init__(self, doc):
        self.schemas = doc["schemas"]
        self.revision = doc.get("revision", "?")

    def check(self, value, schema, at, errors, warnings):
        if "$ref" in schema:
            name = schema["$ref"]
            if name not in self.schemas:
                errors.append(f"{at or '/'}: the schema names an unknown $ref {name}")
                return
            return self.check(value, self.schemas[name], at, errors, warnings)
        where = at or "/"
        kind = schema.get("type", "any")
        fmt = schema.get("format")
        if kind == "any":
            return
        if kind == "object":
            if not isinstance(value, dict):
                errors.append(f"{where}: {type_name(value)}, the schema wants an object")
                return
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                sub = props.get(key)
                if sub is None and extra is None:
                    errors.append(
                        f"{pointer(at, key)}: unknown property {key!r} "
                        f"({schema.get('id', 'this object')} has {', '.join(sorted(props)) or 'none'})"
                    )
                    continue
                sub = sub or extra
                if sub.get("readOnly"):
                    errors.append(f"{pointer(at, key)}: {key!r} is output only (readOnly): Google ignores it")
                if sub.get("deprecated"):
                    warnings.append(f"{pointer(at, key)}: {key!r} is deprecated")
                self.check(item, sub, pointer(at, key), errors, warnings)
            return
        if kind == "array":
            if not isinstance(value, list):
                errors.append(f"{where}: {type_name(value)}, the schema wants an array")
                return
            for i, item in enumerate(value):
                self.check(item, schema.get("items", {}), pointer(at, i), errors, warnings)
            return
        if kind == "boolean":
            if not isinstance(value, bool):
                errors.append(f"{where}: {type_name(value)}, the schema wants a boolean")
            return
        if kind == "integer":
            # Proto JSON takes an integer or its decimal string.
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, str) and INT.match(value)
            )
            if not ok:
                errors.append(f"{where}: {value!r}, the schema wants an integer ({fmt})")
            return
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                errors.append(f"{where}: {type_name(value)}, the schema wants a number ({fmt})")
            return
        if kind == "string":
            if fmt in ("int64", "uint64") and isinstance(value, int) and not isinstance(value, bool):
                return  # proto JSON takes an int64 as a number too
            if not isinstance(value, str):
                errors.append(f"{where}: {type_name(value)}, the schema wants a string")
                return
            if "enum" in schema and value not in schema["enum"]:
                errors.append(f"{where}: {value!r} is not one of {', '.join(schema['enum'])}")
            if fmt in ("int64", "uint64") and not INT.match(value):
                errors.append(f"{where}: {value!r} is not an {fmt}")
            if fmt == "google-datetime" and not rfc3339(value):
                errors.append(f"{where}: {value!r} is not an RFC 3339 time")
            if fmt == "byte":
                try:
                    base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
                except ValueError:
                    errors.append(f"{where}: {value!r} is not base64")
            return
        errors.append(f"{where}: the schema has an unknown type {kind!r}")


def rfc3339(s):
    try:
        datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        return "T" in s
    except ValueError:
        return False


def type_name(v):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def check_request(checker, req):
    """(errors, warnings) for one {method, url, body} request."""
    body = req.get("body")
    if req.get("method") == "DELETE" or body is None:
        return [], []
    if not isinstance(body, dict):
        return ["/: the body is not a JSON object"], []
    errors, warnings = [], []
    checker.check(body, {"$ref": "Message"}, "", errors, warnings)
    return errors, warnings


def read(args):
    files = []
    for a in args:
        p = Path(a)
        files += sorted(p.glob("googlechat.*.json")) if p.is_dir() else [p]
    return [(f.name, json.loads(f.read_text())) for f in files]


def main(argv):
    checker = Checker(discovery())
    self_test = argv[:1] == ["--self-test"]
    requests = read([HERE / "samples"] if self_test else argv)
    wrong, failed = [], False
    for name, req in requests:
        errors, warnings = check_request(checker, req)
        for w in warnings:
            print(f"warn {name}: {w}")
        if errors:
            failed = True
            print(f"FAIL {name}:\n  " + "\n  ".join(errors))
        else:
            print(f"ok     {name} (chat.v1.json revision {checker.revision} Message)")
        if self_test:
            valid = name.split(".")[1] == "valid"
            if valid and errors:
                wrong.append(f"{name} should pass")
            if not valid:
                if not errors:
                    wrong.append(f"{name} should fail")
                if not req.get("expect"):
                    wrong.append(f'{name}: names no "expect"')
                for e in req.get("expect", []):
                    if not any(e in x for x in errors):
                        wrong.append(f"{name}: no problem mentions {e!r}")
    if self_test:
        for v in ("valid", "invalid"):
            if not any(n.startswith(f"googlechat.{v}.") for n, _ in requests):
                wrong.append(f"no samples/googlechat.{v}.*.json")
        if wrong:
            print("self-test FAILED:\n" + "\n".join(wrong))
            return 1
        print(f"self-test: {len(requests)} Google Chat samples as expected")
        return 0
    if not argv:
        print("usage: check_google.py DIR_OR_FILE... | --self-test", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Checks Google Chat request bodies against the Chat API's own definition.

Usage: googlechat.py FILE... (each a request as tests/cards.rs writes it to
target/cards/: {"body": {...}, ...}).

The definition is the Chat API discovery document (chat.v1.json) that the
PyPI package google-api-python-client ships (googleapiclient/
discovery_cache/documents/): every body is read as a `Message`, and every
field it sets must be one the schema names, of the schema's type, with a
value its enum allows, and not read-only. Exits 1, naming each field by
its JSON pointer, when a body would be refused.
"""

import json
import pathlib
import sys

import googleapiclient

DOC = (
    pathlib.Path(googleapiclient.__file__).parent
    / "discovery_cache"
    / "documents"
    / "chat.v1.json"
)
SCHEMAS = json.loads(DOC.read_text())["schemas"]


def check(value, schema, at, errors):
    """Appends to `errors` what in `value` the `schema` does not allow."""
    if "$ref" in schema:
        schema = SCHEMAS[schema["$ref"]]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            errors.append(f"{at}: expected an object")
            return
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            here = f"{at}/{key}"
            if props is not None and key in props:
                if props[key].get("readOnly"):
                    errors.append(f"{here}: read-only (output only)")
                check(item, props[key], here, errors)
            elif extra is not None:
                check(item, extra, here, errors)
            else:
                errors.append(f"{here}: no such field in {schema.get('id', 'object')}")
    elif kind == "array":
        if not isinstance(value, list):
            errors.append(f"{at}: expected an array")
            return
        for i, item in enumerate(value):
            check(item, schema.get("items", {}), f"{at}/{i}", errors)
    elif kind == "string":
        # int64 and the like travel as strings too.
        if not isinstance(value, str):
            errors.append(f"{at}: expected a string")
        elif "enum" in schema and value not in schema["enum"]:
            errors.append(f"{at}: {value!r} is not one of {schema['enum']}")
    elif kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{at}: expected a number")
        elif kind == "integer" and not float(value).is_integer():
            errors.append(f"{at}: expected an integer")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{at}: expected a boolean")


def main(files):
    failed = 0
    for name in files:
        body = json.loads(pathlib.Path(name).read_text())["body"]
        errors = []
        check(body, {"$ref": "Message"}, "", errors)
        if "cardsV2" not in body:
            errors.append("/cardsV2: the default message must carry a card")
        for e in errors:
            print(f"FAIL {name}: {e}")
        failed += bool(errors)
    print(f"googlechat: {len(files)} bodies checked against chat.v1.json, {failed} failed")
    return 1 if failed or not files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

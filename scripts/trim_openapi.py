"""Regenerate the sandbox's trimmed copy of Twilio's OpenAPI description.

    python scripts/trim_openapi.py [SOURCE] [DEST]

SOURCE defaults to ../shared/twilio-oai/twilio_api_v2010.json (twilio/twilio-oai 2.6.7) and DEST to
dialtone/sandbox/api/spec/twilio_api_v2010.json. Only the operations Dialtone uses are kept, verbatim,
with the components they reference; everything else is dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "twilio-oai" / "twilio_api_v2010.json"
DEST = ROOT / "dialtone" / "sandbox" / "api" / "spec" / "twilio_api_v2010.json"

ACCOUNT = "/2010-04-01/Accounts/{AccountSid}"
# path -> the HTTP methods Dialtone (and its sandbox) use on it
OPERATIONS = {
    f"{ACCOUNT}/IncomingPhoneNumbers.json": ["get"],
    f"{ACCOUNT}/IncomingPhoneNumbers/{{Sid}}.json": ["get", "post"],
    f"{ACCOUNT}/Messages.json": ["get", "post"],
    f"{ACCOUNT}/Messages/{{Sid}}.json": ["get"],
    f"{ACCOUNT}/Calls.json": ["get", "post"],
    f"{ACCOUNT}/Calls/{{Sid}}.json": ["get", "post"],
    f"{ACCOUNT}/Applications.json": ["get", "post"],  # the sandbox's ApplicationSid calls
    f"{ACCOUNT}/Applications/{{Sid}}.json": ["get", "post", "delete"],
}
HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def refs(node: Any) -> set[str]:
    """Every `#/components/schemas/...` name referenced anywhere under `node`."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of `spec` with only OPERATIONS and the schemas they reach."""
    paths: dict[str, Any] = {}
    for path, methods in OPERATIONS.items():
        item = spec["paths"][path]
        kept = {k: v for k, v in item.items() if k not in HTTP_METHODS or k in methods}
        missing = set(methods) - set(kept)
        if missing:
            raise SystemExit(f"{path} has no {sorted(missing)} in the source description")
        paths[path] = kept
    all_schemas = spec["components"]["schemas"]
    wanted: set[str] = set()
    todo = refs(paths)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo |= refs(all_schemas[name]) - wanted
    return {
        "openapi": spec["openapi"],
        "info": spec["info"],
        "servers": spec["servers"],
        "security": spec.get("security", []),
        "paths": paths,
        "components": {
            "securitySchemes": spec["components"]["securitySchemes"],
            "schemas": {name: all_schemas[name] for name in sorted(wanted)},
        },
    }


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else SOURCE
    dest = Path(argv[2]) if len(argv) > 2 else DEST
    spec = json.loads(source.read_text(encoding="utf-8"))
    dest.write_text(json.dumps(trim(spec), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {dest} ({dest.stat().st_size // 1024} KiB) from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

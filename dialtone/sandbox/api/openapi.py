"""Check REST requests and responses against Twilio's OpenAPI description (the trimmed copy in spec/).

    spec = load_spec()
    problems = spec.check_request("POST", "/2010-04-01/Accounts/AC.../Messages.json", query=[], form=[("Body", "hi")])
    # -> [Violation(... "required parameter To is missing")]

Requests: the operation exists; required parameters are present; every name is one the
operation declares; values match their type (boolean, integer, number), enum, pattern and length,
and `format: uri` values are absolute http(s) URLs; only array parameters repeat. Responses: the
status is one the operation declares (errors must be Twilio's error body), and the JSON has every
field the schema lists, no others, each of the right type, enum, pattern and timestamp format.

Quirks of Twilio's description, and what this checker does about them:
- `format: phone-number` / `endpoint` are not patterns (Twilio accepts many spellings): not checked.
- Error responses (4xx) are not described at all: checked against Twilio's documented error body.
- `MediaUrl` items are `format: uri` with `x-twilio.ignoreFormat`: the format is not checked.
- Schemas list no `required` fields, yet Twilio always sends every field (null when unknown): a
  response missing a listed field is flagged, to keep the sandbox's shapes complete.
- Enum schemas reached by `$ref` (a message's `status`) are not marked nullable: null is flagged.
- Parameters such as `DateSent<` and `StartTime>` carry the comparison in the name: matched as is.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("dialtone.sandbox.api.openapi")

SPEC_PATH = Path(__file__).parent / "spec" / "twilio_api_v2010.json"
ERROR_FIELDS = {"code": int, "message": str, "more_info": str, "status": int}


@dataclass(frozen=True)
class Violation:
    """One way a request or response disagrees with the description."""

    where: str  # e.g. "POST /2010-04-01/Accounts/{AccountSid}/Messages.json request"
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass
class Operation:
    """One method on one path template, with its parameters and schemas resolved."""

    method: str
    template: str
    pattern: re.Pattern[str]
    path_params: dict[str, dict[str, Any]]
    query_params: dict[str, dict[str, Any]]
    required_query: frozenset[str]
    body: dict[str, dict[str, Any]] = field(default_factory=dict)
    required_body: frozenset[str] = frozenset()
    responses: dict[str, dict[str, Any] | None] = field(default_factory=dict)


class Spec:
    """A loaded OpenAPI description with request and response checks."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.operations: list[Operation] = []
        for template, item in document["paths"].items():
            for method in ("get", "post", "put", "delete", "patch"):
                if method in item:
                    self.operations.append(self._operation(method.upper(), template, item[method]))

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow `$ref`s to the schema they name."""
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            schema = self.document["components"]["schemas"][name]
        return schema

    def _operation(self, method: str, template: str, op: dict[str, Any]) -> Operation:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        params = op.get("parameters", [])
        path = {p["name"]: p["schema"] for p in params if p["in"] == "path"}
        query = {p["name"]: p["schema"] for p in params if p["in"] == "query"}
        required_query = frozenset(
            p["name"] for p in params if p["in"] == "query" and p.get("required")
        )
        body_schema = (
            op.get("requestBody", {})
            .get("content", {})
            .get("application/x-www-form-urlencoded", {})
            .get("schema")
        )
        body = self.resolve(body_schema) if body_schema else {}
        responses: dict[str, dict[str, Any] | None] = {}
        for status, response in op.get("responses", {}).items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            responses[status] = schema
        return Operation(
            method=method,
            template=template,
            pattern=re.compile(f"^{regex}$"),
            path_params=path,
            query_params=query,
            required_query=required_query,
            body=body.get("properties", {}),
            required_body=frozenset(body.get("required", [])),
            responses=responses,
        )

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for this method and concrete path, with the path parameters."""
        for op in self.operations:
            match = op.pattern.match(path)
            if match and op.method == method.upper():
                return op, match.groupdict()
        return None

    # --- requests ---------------------------------------------------------------------------

    def check_request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        form: Iterable[tuple[str, str]] = (),
    ) -> list[Violation]:
        """Every way this request disagrees with the description ([] when it agrees)."""
        found = self.find(method, path)
        if found is None:
            return [Violation(f"{method} {path}", "no such operation in the description")]
        op, path_values = found
        where = f"{op.method} {op.template} request"
        problems: list[str] = []
        for name, value in path_values.items():
            problems += self._value_problems(f"path parameter {name}", op.path_params[name], value)
        problems += self._params_problems(
            "query parameter", op.query_params, op.required_query, query
        )
        if op.method == "POST":
            problems += self._params_problems("parameter", op.body, op.required_body, form)
        elif list(form):
            problems.append(f"{op.method} must not have a form body")
        return [Violation(where, p) for p in problems]

    def _params_problems(
        self,
        kind: str,
        declared: dict[str, dict[str, Any]],
        required: frozenset[str],
        given: Iterable[tuple[str, str]],
    ) -> list[str]:
        values: dict[str, list[str]] = {}
        for name, value in given:
            values.setdefault(name, []).append(value)
        problems = [f"required {kind} {name} is missing" for name in sorted(required - set(values))]
        for name, items in values.items():
            if name not in declared:
                problems.append(f"unknown {kind} {name}")
                continue
            schema = self.resolve(declared[name])
            if schema.get("type") == "array":
                item_schema = self.resolve(schema.get("items", {}))
                for item in items:
                    problems += self._value_problems(f"{kind} {name}", item_schema, item)
                continue
            if len(items) > 1:
                problems.append(f"{kind} {name} is given {len(items)} times but is not a list")
            problems += self._value_problems(f"{kind} {name}", schema, items[0])
        return problems

    def _value_problems(self, label: str, schema: dict[str, Any], value: str) -> list[str]:
        """Problems with one form/query/path value (always a string on the wire)."""
        schema = self.resolve(schema)
        kind = schema.get("type", "string")
        if kind == "boolean" and value.lower() not in ("true", "false"):
            return [f"{label}={value!r} is not true or false"]
        if kind == "integer":
            if not re.fullmatch(r"-?\d+", value):
                return [f"{label}={value!r} is not an integer"]
            number = int(value)
            if "minimum" in schema and number < schema["minimum"]:
                return [f"{label}={value} is below the minimum {schema['minimum']}"]
            if "maximum" in schema and number > schema["maximum"]:
                return [f"{label}={value} is above the maximum {schema['maximum']}"]
        if kind == "number":
            try:
                float(value)
            except ValueError:
                return [f"{label}={value!r} is not a number"]
        if kind == "string":
            return self._string_problems(label, schema, value, check_uri=True)
        return []

    def _string_problems(
        self, label: str, schema: dict[str, Any], value: str, *, check_uri: bool
    ) -> list[str]:
        problems = []
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{label}={value!r} is not one of {', '.join(schema['enum'])}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{label}={value!r} does not match {schema['pattern']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{label} is shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{label} is longer than {schema['maxLength']} characters")
        ignore_format = schema.get("x-twilio", {}).get("ignoreFormat")
        if check_uri and schema.get("format") == "uri" and value and not ignore_format:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(f"{label}={value!r} is not an absolute http(s) URL")
        if schema.get("format") == "date-time-rfc-2822":
            try:
                parsedate_to_datetime(value)
            except (TypeError, ValueError):
                problems.append(f"{label}={value!r} is not an RFC 2822 timestamp")
        return problems

    # --- responses --------------------------------------------------------------------------

    def check_response(self, method: str, path: str, status: int, body: Any) -> list[Violation]:
        """Every way this response disagrees with the description ([] when it agrees)."""
        found = self.find(method, path)
        if found is None:
            return []  # the request check already reported it
        op, _ = found
        where = f"{op.method} {op.template} response {status}"
        if status >= 400:
            return [Violation(where, p) for p in _error_body_problems(body)]
        if str(status) not in op.responses:
            declared = ", ".join(op.responses)
            return [Violation(where, f"status {status} is not one of the declared {declared}")]
        schema = op.responses[str(status)]
        if schema is None:
            return []
        return [Violation(where, p) for p in self._json_problems("body", schema, body)]

    def _json_problems(self, label: str, schema: dict[str, Any], value: Any) -> list[str]:
        schema = self.resolve(schema)
        if value is None:
            return [] if schema.get("nullable") else [f"{label} is null"]
        kind = schema.get("type")
        expected: dict[str | None, Any] = {
            "string": str,
            "integer": int,
            "number": (int, float),
            "boolean": bool,
            "object": dict,
            "array": list,
        }
        wanted = expected.get(kind)
        wrong_bool = isinstance(value, bool) and kind in ("integer", "number")
        if wanted is not None and (not isinstance(value, wanted) or wrong_bool):
            return [f"{label} is {type(value).__name__}, not {kind}"]
        if kind == "string":
            return self._string_problems(label, schema, value, check_uri=False)
        if kind == "array":
            problems: list[str] = []
            for i, item in enumerate(value):
                problems += self._json_problems(f"{label}[{i}]", schema.get("items", {}), item)
            return problems
        if kind == "object" and "properties" in schema:
            properties = schema["properties"]
            problems = [f"{label}.{k} is not in the schema" for k in value if k not in properties]
            problems += [f"{label}.{k} is missing" for k in properties if k not in value]
            for key, sub in properties.items():
                if key in value:
                    problems += self._json_problems(f"{label}.{key}", sub, value[key])
            return problems
        return []


def _error_body_problems(body: Any) -> list[str]:
    """Problems with an error answer, which must be Twilio's error body."""
    if not isinstance(body, dict):
        return ["an error answer must be Twilio's JSON error body"]
    problems = [f"error body field {k} is missing" for k in ERROR_FIELDS if k not in body]
    for key, kind in ERROR_FIELDS.items():
        if key in body and not isinstance(body[key], kind):
            problems.append(f"error body field {key} is not {kind.__name__}")
    return problems


class ViolationLog:
    """The violations seen so far, shared between request threads; each is also logged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Violation] = []

    def add(self, violations: Iterable[Violation]) -> None:
        """Record (and log) some violations."""
        for violation in violations:
            log.warning("Twilio's OpenAPI description disagrees: %s", violation)
            with self._lock:
                self._items.append(violation)

    def take(self) -> list[Violation]:
        """The violations recorded so far, clearing the log."""
        with self._lock:
            items, self._items = self._items, []
            return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@functools.cache
def load_spec(path: Path = SPEC_PATH) -> Spec:
    """The description at `path` (the vendored trimmed copy by default), parsed once."""
    return Spec(json.loads(path.read_text(encoding="utf-8")))

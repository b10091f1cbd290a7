"""The route API: `@webhook` and `@api` mark plain functions; `load_routes` finds them.

    from dialtone import webhook

    @webhook("/hello")
    def hello(form):
        ...

The decorators only mark the function (nothing is registered at import time); `load_routes`
imports every module in the routes directory in file-name order and collects the marked
functions in the order they are defined; `dialtone.app.create_app` mounts them. A handler asks
for what it needs by parameter name (`form`, `settings`, `record`, ...): `Injector` checks the
names once, at start-up, and hands the values out on each request.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeVar

from dialtone.errors import DialtoneError

F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["webhook", "api"]

MARK = "__dialtone_routes__"
# Bottle's wildcards: <name>, <name:filter>, <name:filter:config>.
_WILDCARD = re.compile(r"<([a-zA-Z_][a-zA-Z_0-9]*)(?::[^>]*)?>")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class RouteError(DialtoneError):
    """A route module cannot be loaded, or its routes cannot be mounted; the message says where."""


@dataclass(frozen=True)
class RouteSpec:
    """One marked handler: what kind of route, where, and where it was written."""

    kind: Kind
    path: str
    method: str
    handler: Callable[..., Any]
    on_error: Callable[..., Any] | None = None
    status: int = 200
    source: str = field(default="", compare=False)  # "routes/hello.py, line 5"

    @property
    def wildcards(self) -> tuple[str, ...]:
        """The names of the path's wildcards, which Bottle passes to the handler."""
        return tuple(_WILDCARD.findall(self.path))


def webhook(path: str, *, on_error: Callable[..., Any] | None = None) -> Callable[[F], F]:
    """Mark a function as a signed Twilio webhook at `path` (POST only).

    The handler gets the decoded form as `form` (and anything else it names) and returns a TwiML
    response object, TwiML as a string, or None (204 No Content). When it raises, the answer is
    `on_error()` (which may name parameters too) or an empty <Response/>, and the traceback goes
    to the server log.
    """
    _check_path(path)
    return _marker(RouteSpec("webhook", path, "POST", _placeholder, on_error))


def api(path: str, *, method: str = "GET", status: int = 200) -> Callable[[F], F]:
    """Mark a function as a JSON API route behind `Authorization: Bearer <API_TOKEN>`.

    The handler returns a dict, sent as JSON with `status`; a POST handler reads its body as
    `payload` (a JSON object, 400 otherwise). Errors: raise `dialtone.web.jsonapi.fail()`.
    """
    _check_path(path)
    method = method.upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(sorted(METHODS))}, not {method!r}")
    return _marker(RouteSpec("api", path, method, _placeholder, status=status))


def routes_of(*handlers: Callable[..., Any]) -> list[RouteSpec]:
    """The routes marked on `handlers`, in order: for tests and apps built in code."""
    specs = [spec for handler in handlers for spec in getattr(handler, MARK, ())]
    check_unique(specs)
    return specs


def _placeholder() -> None:  # pragma: no cover (replaced by the marked function)
    return None


def _check_path(path: str) -> None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"a route path starts with '/', like '/hello'; not {path!r}")


def _marker(template: RouteSpec) -> Callable[[F], F]:
    def mark(handler: F) -> F:
        spec = RouteSpec(
            template.kind,
            template.path,
            template.method,
            handler,
            template.on_error,
            template.status,
            source=_where(handler),
        )
        setattr(handler, MARK, (*getattr(handler, MARK, ()), spec))
        return handler

    return mark


def _where(handler: Callable[..., Any]) -> str:
    code = getattr(handler, "__code__", None)
    if code is None:
        return getattr(handler, "__qualname__", repr(handler))
    return f"{_shown_path(Path(code.co_filename))}, line {code.co_firstlineno}"


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is inside it (shorter to read)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# -- discovery ---------------------------------------------------------------------------------

# Loaded modules by file, with the (mtime, size) they were loaded at: building many apps from
# one directory (tests, the benchmark) imports each file once.
_loaded: dict[Path, tuple[tuple[int, int], ModuleType]] = {}


def route_files(directory: Path) -> list[Path]:
    """The route modules in `directory`: every *.py not starting with '_', by file name."""
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def load_routes(directory: Path) -> list[RouteSpec]:
    """Import every route module in `directory` and return its routes, in a fixed order.

    File-name order, then definition order within a file. RouteError (one paragraph, no
    traceback) for a module that fails to import, naming the file and line, and for two routes
    on one method and path, naming both.
    """
    if not directory.is_dir():
        raise RouteError(
            f"The routes directory {directory} does not exist. Create it, or set ROUTES_DIR to "
            "the directory that holds your route modules."
        )
    _as_package(directory)
    specs: list[RouteSpec] = []
    for file in route_files(directory):
        module = _import(file)
        found = [
            spec
            for value in vars(module).values()
            if getattr(value, "__module__", None) == module.__name__
            for spec in getattr(value, MARK, ())
        ]
        specs += sorted(found, key=lambda spec: spec.handler.__code__.co_firstlineno)
    check_unique(specs)
    return specs


def check_unique(specs: Iterable[RouteSpec]) -> None:
    """RouteError when two routes answer the same method and path."""
    seen: dict[tuple[str, str], RouteSpec] = {}
    for spec in specs:
        key = (spec.method, spec.path)
        if key in seen:
            first = seen[key]
            raise RouteError(
                f"Two routes answer {spec.method} {spec.path}: {first.handler.__name__}() "
                f"({first.source}) and {spec.handler.__name__}() ({spec.source}). "
                "Give one of them another path."
            )
        seen[key] = spec


def _as_package(directory: Path) -> None:
    """Make `directory` the `routes` package, so route modules can import their helpers
    (`from routes._helpers import x`, or `from . import _helpers`) wherever Dialtone runs from."""
    package = ModuleType("routes", "The app's route modules.")
    package.__path__ = [str(directory.resolve())]
    package.__package__ = "routes"
    sys.modules["routes"] = package


def _import(file: Path) -> ModuleType:
    file = file.resolve()
    stat = file.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _loaded.get(file)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    name = f"routes.{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise RouteError(f"{_shown_path(file)} cannot be loaded as a Python module.")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules while it runs (dataclasses and typing look it up) and after, so the dev
    # loop's reloader watches the file.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise RouteError(_import_failure(file, exc)) from None
    _loaded[file] = (stamp, module)
    return module


def _import_failure(file: Path, exc: BaseException) -> str:
    """One paragraph: the route file, the line, and what went wrong there."""
    shown = _shown_path(file)
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == file:
        return (
            f"The route module {shown} cannot be loaded: line {exc.lineno}: "
            f"{type(exc).__name__}: {exc.msg}. Fix it (files whose name starts with '_' are "
            "not loaded)."
        )
    frames = traceback.extract_tb(exc.__traceback__)
    own = [frame for frame in frames if Path(frame.filename).resolve() == file]
    line = f"line {own[-1].lineno}" if own else "while importing"
    where = ""
    if frames and own and frames[-1] is not own[-1]:
        where = f" (raised in {_shown_path(Path(frames[-1].filename))}, line {frames[-1].lineno})"
    message = str(exc).strip() or "(no message)"
    return (
        f"The route module {shown} cannot be loaded: {line}: {type(exc).__name__}: "
        f"{message}{where}. Fix it (files whose name starts with '_' are not loaded)."
    )


# -- injection ---------------------------------------------------------------------------------

Provider = Callable[[], Any]


class Injector:
    """Hands a handler what its parameters name, checked once when the route is mounted."""

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self.providers = dict(providers)

    def plan(
        self, spec: RouteSpec, function: Callable[..., Any], extra: Mapping[str, Provider]
    ) -> Callable[[], dict[str, Any]]:
        """A function that builds `function`'s keyword arguments for the current request.

        `extra` holds what this kind of route adds (`form`, `payload`). Path wildcards are left
        to Bottle. A parameter nobody provides is a RouteError naming the handler and the names
        it could use, unless it has a default.
        """
        available = {**self.providers, **extra}
        chosen: dict[str, Provider] = {}
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if name in spec.wildcards:
                continue
            if name in available:
                chosen[name] = available[name]
            elif parameter.default is parameter.empty:
                known = [*extra, *self.providers, *spec.wildcards]
                close = difflib.get_close_matches(name, known, n=1)
                guess = f" Did you mean {close[0]!r}?" if close else ""
                raise RouteError(
                    f"{function.__name__}() ({_where(function)}) asks for {name!r}, which "
                    f"Dialtone does not provide to a {spec.kind} route.{guess} A handler can ask "
                    f"for {', '.join(known)} (docs/routes.md says what each is)."
                )
        items = tuple(chosen.items())
        return lambda: {name: provide() for name, provide in items}

"""Reading scenario files: YAML (safe loading, with file lines) and Python.

A YAML scenario is read with a subclass of ``yaml.CSafeLoader`` (libyaml's C
parser; ``yaml.SafeLoader`` where PyYAML lacks it) that

* records the 1-based line of every mapping key and sequence item, so that each
  problem names its line;
* reports duplicate keys (plain YAML silently keeps the last one);
* does not read ``52:54:00:12:34:56`` as a base-60 integer (YAML 1.1 would), so
  unquoted MAC addresses stay strings.

A Python scenario is a file defining ``scenario(**params)`` that returns the
same structure as a dict. ``--param KEY=VALUE`` values arrive as strings and
are converted to ``int``, ``float`` or ``bool`` where the parameter's
annotation or default value says so.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import itertools
import os
import re
import signal
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from netvirt.errors import Problem, ScenarioError
from netvirt.scenario.checker import MAX_DEPTH, BigNumber, LineDict, LineList, one_line
from netvirt.scenario.model import Scenario
from netvirt.scenario.validate import validate

__all__ = ["load", "load_text"]


@functools.cache
def _line_loader() -> Any:
    """The loader class, made on first use: ``import yaml`` costs a Python scenario nothing.

    libyaml's C parser where PyYAML was built with it (about 10x faster on a
    200-node scenario); it marks every node with its line as the pure-Python one does.
    """
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class LineLoader(base):  # type: ignore[misc]
        """Safe loader producing LineDict/LineList, without sexagesimal numbers."""

        yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers
                    if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

    LineLoader.add_implicit_resolver(
        "tag:yaml.org,2002:int",
        re.compile(r"""^(?:[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+)$""", re.X),
        list("-+0123456789"),
    )
    LineLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."),
    )
    LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
    LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
    LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
    return LineLoader


def _construct_int(loader: Any, node: Any) -> Any:
    """An int, or a BigNumber where Python refuses the conversion (a decimal of more than
    4300 digits): validation then says where it is, instead of the parser failing."""
    try:
        return loader.construct_yaml_int(node)
    except ValueError:
        return BigNumber(sum(c.isdigit() for c in str(node.value)))


def _check_depth(text: str, loader: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH before composing (libyaml's composer recurses
    in C: some 100 000 levels of ``[`` crash the process). The event parser is iterative."""
    import yaml

    starts = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
    ends = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, starts):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise _TooDeep(mark.line + 1 if mark is not None else None)
        elif isinstance(event, ends):
            depth -= 1


class _TooDeep(Exception):
    def __init__(self, line: int | None) -> None:
        super().__init__(line)
        self.line = line


#: below this size a text cannot nest deep enough to hurt, so the depth pass is skipped
_DEPTH_SCAN_CHARS = 4096


def _construct_map(loader: Any, node: Any) -> Any:
    data = LineDict()
    data.line = node.start_mark.line + 1
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            key = f"<{type(key).__name__} key>"
        if key in data:
            data.duplicates.append((key, line))
        data.key_lines[key] = line
        data[key] = loader.construct_object(value_node, deep=False)


def _construct_seq(loader: Any, node: Any) -> Any:
    data = LineList()
    data.line = node.start_mark.line + 1
    yield data
    for item in node.value:
        data.item_lines.append(item.start_mark.line + 1)
        data.append(loader.construct_object(item, deep=False))


def parse_yaml(text: str, source: str) -> Any:
    """Raw structure of a YAML scenario; a syntax error is one Problem with its line."""
    loader = _line_loader()
    import yaml

    try:
        if len(text) > _DEPTH_SCAN_CHARS:
            _check_depth(text, loader)
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except _TooDeep as e:
        raise ScenarioError(Problem("", f"YAML nested more than {MAX_DEPTH} levels deep: no "
                                        "scenario is", e.line, source)) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = e.problem or e.context or "cannot parse"
        if e.context and e.problem:
            where = ""
            if e.context_mark is not None and e.context_mark.line + 1 != line:
                where = f" that starts on line {e.context_mark.line + 1}"
            what = f"{e.problem} ({e.context}{where})"
        raise ScenarioError(Problem("", one_line(f"YAML syntax error: {what}"), line, source)) from None
    except yaml.YAMLError as e:
        raise ScenarioError(Problem("", one_line(f"YAML error: {e}"), None, source)) from None
    except RecursionError:
        raise ScenarioError(Problem("", "YAML nested too deeply to be a scenario", None, source)) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ScenarioError(Problem("", f"YAML value out of range: {e}", None, source)) from None


def load_text(text: str, source: str = "<string>") -> Scenario:
    """Validate YAML scenario ``text``; ``source`` names it in problems."""
    return validate(parse_yaml(text, source), source)


def load(path: str | Path, params: Mapping[str, str] | None = None) -> Scenario:
    """Load and validate the scenario file at ``path`` (``.yaml``, ``.yml`` or ``.py``).

    ``params`` are the ``--param KEY=VALUE`` strings; only Python scenarios take them.
    Raises :class:`~netvirt.errors.ScenarioError` listing every problem.
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".py"):
        raise ScenarioError(Problem("", f"a scenario file ends in .yaml, .yml or .py, not "
                                        f"{suffix or 'nothing'!r}", None, source))
    text = _read(path, source)
    if suffix == ".py":
        raw = _run_python(path, dict(params or {}))
        scenario = validate(raw, source)
        return replace(scenario, params=dict(params or {}))
    if params:
        raise ScenarioError(Problem(
            "", f"parameters apply to Python scenarios only; {path.name} is YAML "
                f"(given: {', '.join(sorted(params))})", None, source))
    return validate(parse_yaml(text, source), source)


#: the largest scenario file read (a 4000-node star in YAML is about 0.5 MiB)
MAX_FILE_BYTES = 8 << 20
#: seconds a Python scenario may run (import plus ``scenario()``); NETVIRT_PY_SCENARIO_SECONDS overrides
PY_SCENARIO_SECONDS = 10.0


def _read(path: Path, source: str) -> str:
    """The file's text: a regular file (after symlinks) of at most MAX_FILE_BYTES, UTF-8.

    Opened non-blocking and checked with fstat before any read, so that a FIFO or
    a device named ``.yaml`` (``/dev/zero``) is refused at once instead of hanging.
    """
    def problem(what: str) -> ScenarioError:
        return ScenarioError(Problem("", what, None, source))

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise problem(f"cannot read the scenario: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise problem("not a regular file (a FIFO, device or directory is no scenario)")
        if st.st_size > MAX_FILE_BYTES:
            raise problem(f"the file is {st.st_size >> 20} MiB; a scenario is at most "
                          f"{MAX_FILE_BYTES >> 20} MiB (generate big topologies with a Python scenario)")
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError as e:
        raise problem(f"cannot read the scenario: {e.strerror or e}") from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise problem(f"the scenario is not UTF-8 text: {e}") from None


# --- Python scenarios ---------------------------------------------------------------

_counter = itertools.count()
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


class _TimeUp(BaseException):
    """Raised inside a Python scenario that ran past PY_SCENARIO_SECONDS."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt Python code (loops, sleeps) after ``seconds``: main thread only (SIGALRM)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def alarm(sig: int, frame: object) -> None:
        raise _TimeUp

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _user_code(source: str, doing: str, fn: Callable[[], Any]) -> Any:
    """Run a Python scenario's code: whatever it raises or however it exits is a located error."""
    limit = float(os.environ.get("NETVIRT_PY_SCENARIO_SECONDS", PY_SCENARIO_SECONDS))
    try:
        with _time_limit(limit):
            return fn()
    except KeyboardInterrupt:
        raise
    except _TimeUp:
        raise ScenarioError(Problem("", f"{doing} took longer than {limit:g} s (does it loop or wait?); "
                                        "a Python scenario only builds a dict", None, source)) from None
    except SystemExit as e:
        raise ScenarioError(Problem("", f"{doing} called sys.exit({e.code!r}); a Python scenario "
                                        f"returns its dict instead", None, source)) from None
    except BaseException as e:  # user code: report, never crash (GeneratorExit, own BaseExceptions)
        raise ScenarioError(_code_problem(e, source, doing)) from None


def _run_python(path: Path, params: dict[str, str]) -> Any:
    source = str(path)
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_netvirt_scenario_{next(_counter)}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScenarioError(Problem("", "cannot import this file as Python", None, source))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader = spec.loader
    try:
        _user_code(source, "importing the scenario", lambda: loader.exec_module(module))
    finally:
        sys.modules.pop(name, None)
    func = getattr(module, "scenario", None)
    if not callable(func) or isinstance(func, type):
        raise ScenarioError(Problem("", "a Python scenario must define a function "
                                        "scenario(**params) returning the scenario as a dict",
                                    None, source))
    kwargs = _convert_params(func, params, source)
    raw = _user_code(source, "calling scenario()", lambda: func(**kwargs))
    if type(raw) is not dict:
        raise ScenarioError(Problem("", f"scenario() must return a dict, not "
                                        f"{_type_name(raw)}", None, source))
    return plain(raw, source)


def _type_name(value: object) -> str:
    return type(value).__name__


def plain(value: Any, source: str, where: str = "", depth: int = 0) -> Any:
    """``value`` as plain data (dict, list, str, int, float, bool, None), or a located error.

    What a Python scenario returns is checked once here, so that validation only
    ever meets what YAML could have produced: objects with a raising ``__repr__``,
    ``__eq__`` or ``__hash__``, or data nested without end, never reach it.
    """
    if depth > MAX_DEPTH:
        raise ScenarioError(Problem(where, f"nested more than {MAX_DEPTH} levels deep", None, source))
    kind = type(value)
    if value is None or kind in (str, int, float, bool):
        return value
    if kind in (list, tuple):
        return [plain(v, source, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) not in (str, int, float, bool) and k is not None:
                raise ScenarioError(Problem(where, f"keys are strings, not {_type_name(k)}", None, source))
            out[k] = plain(v, source, f"{where}.{k}" if where else str(k), depth + 1)
        return out
    raise ScenarioError(Problem(where, f"a Python scenario returns plain data (dict, list, str, int, "
                                       f"float, bool, None), not {_type_name(value)}", None, source))


def _code_problem(e: BaseException, source: str, doing: str) -> Problem:
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == source or Path(frame.filename) == Path(source):
            line = frame.lineno
    if isinstance(e, SyntaxError):
        line = e.lineno
    try:
        text = str(e)[:500]
    except Exception:  # an exception whose __str__ raises
        text = "(its message cannot be shown)"
    return Problem("", one_line(f"{type(e).__name__} while {doing}: {text}"), line, source)


def _convert_params(
    func: Callable[..., Any], params: dict[str, str], source: str
) -> dict[str, Any]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        raise ScenarioError(Problem("", "scenario must be a plain function", None, source)) from None
    problems: list[Problem] = []
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    named = {n: p for n, p in sig.parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    out: dict[str, Any] = {}
    for key, text in params.items():
        param = named.get(key)
        if param is None:
            if not takes_any:
                known = ", ".join(named) or "no parameters"
                problems.append(Problem(f"params.{key}", f"unknown parameter {key!r}; "
                                        f"this scenario takes: {known}", None, source))
            else:
                out[key] = text
            continue
        target = _target_type(param)
        try:
            out[key] = _convert(text, target)
        except ValueError:
            problems.append(Problem(f"params.{key}", f"parameter {key!r} must be "
                                    f"{target.__name__}, not {text!r}", None, source))
    for name, param in named.items():
        if param.default is param.empty and name not in params:
            problems.append(Problem(f"params.{name}", f"parameter {name!r} is required: "
                                    f"pass --param {name}=VALUE", None, source))
    if problems:
        raise ScenarioError(problems)
    return out


def _target_type(param: inspect.Parameter) -> type:
    ann = param.annotation
    if isinstance(ann, str):
        ann = {"int": int, "float": float, "bool": bool, "str": str}.get(ann.strip())
    if ann in (int, float, bool, str):
        return ann  # type: ignore[no-any-return]
    default = param.default
    if default is not param.empty and default is not None and type(default) in (int, float, bool):
        return type(default)
    return str


def _convert(text: str, target: type) -> Any:
    if target is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(text)
    if target is int:
        return int(text.strip())
    if target is float:
        return float(text)
    return text

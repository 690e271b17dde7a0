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

import functools
import importlib.util
import inspect
import itertools
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from netvirt.errors import Problem, ScenarioError
from netvirt.scenario.checker import LineDict, LineList
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
    LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
    LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
    return LineLoader


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
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = e.problem or e.context or "cannot parse"
        if e.context and e.problem:
            where = ""
            if e.context_mark is not None and e.context_mark.line + 1 != line:
                where = f" that starts on line {e.context_mark.line + 1}"
            what = f"{e.problem} ({e.context}{where})"
        raise ScenarioError(Problem("", f"YAML syntax error: {what}", line, source)) from None
    except yaml.YAMLError as e:
        raise ScenarioError(Problem("", f"YAML error: {e}", None, source)) from None


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
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(Problem("", f"cannot read the scenario: {e.strerror or e}",
                                    None, source)) from None
    except UnicodeDecodeError as e:
        raise ScenarioError(Problem("", f"the scenario is not UTF-8 text: {e}",
                                    None, source)) from None
    if suffix == ".py":
        raw = _run_python(path, dict(params or {}))
        scenario = validate(raw, source)
        return replace(scenario, params=dict(params or {}))
    if params:
        raise ScenarioError(Problem(
            "", f"parameters apply to Python scenarios only; {path.name} is YAML "
                f"(given: {', '.join(sorted(params))})", None, source))
    return validate(parse_yaml(text, source), source)


# --- Python scenarios ---------------------------------------------------------------

_counter = itertools.count()
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


def _run_python(path: Path, params: dict[str, str]) -> Any:
    source = str(path)
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_netvirt_scenario_{next(_counter)}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScenarioError(Problem("", "cannot import this file as Python", None, source))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # user code: report, do not crash
        sys.modules.pop(name, None)
        raise ScenarioError(_code_problem(e, source, "importing the scenario")) from e
    func = getattr(module, "scenario", None)
    if not callable(func):
        raise ScenarioError(Problem("", "a Python scenario must define a function "
                                        "scenario(**params) returning the scenario as a dict",
                                    None, source))
    kwargs = _convert_params(func, params, source)
    try:
        raw = func(**kwargs)
    except Exception as e:
        raise ScenarioError(_code_problem(e, source, "calling scenario()")) from e
    if not isinstance(raw, dict):
        raise ScenarioError(Problem("", f"scenario() must return a dict, not "
                                        f"{type(raw).__name__}", None, source))
    return raw


def _code_problem(e: BaseException, source: str, doing: str) -> Problem:
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == source or Path(frame.filename) == Path(source):
            line = frame.lineno
    if isinstance(e, SyntaxError):
        line = e.lineno
    return Problem("", f"{type(e).__name__} while {doing}: {e}", line, source)


def _convert_params(
    func: Callable[..., Any], params: dict[str, str], source: str
) -> dict[str, Any]:
    sig = inspect.signature(func)
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

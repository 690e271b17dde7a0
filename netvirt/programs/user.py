"""User code as a program: ``program: {python: "module:callable", ...}``.

The callable is ``async def handler(ctx: ProgramContext) -> None``; it gets
the device's port, the other keys of the mapping (``ctx.params``), the
interface's addresses, ``ctx.open_socket`` and ``ctx.counters`` (which
``status`` and the ``counters`` step read). ``module`` is a dotted module
name found on ``sys.path``, or a path to a ``.py`` file (relative to the
working directory). Nothing is imported until :meth:`UserProgram.load` or
:meth:`UserProgram.run`, so validating a scenario runs no user code; an
import that fails becomes a :class:`~netvirt.errors.ScenarioError` naming
the place and the reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, ClassVar

from ..errors import Problem, ScenarioError
from ._checks import USER, split_target
from ._program import Program, ProgramContext

__all__ = ["Handler", "UserProgram"]

Handler = Callable[[ProgramContext], Awaitable[None]]
class UserProgram(Program):
    """Runs a user's async handler; its counters are whatever it puts in ``ctx.counters``."""

    schema = USER
    KEY: ClassVar[str] = USER.name

    def __init__(self, ctx: ProgramContext) -> None:
        super().__init__(ctx)
        self.target: str = ctx.params[self.KEY]
        self._handler: Handler | None = None

    def __repr__(self) -> str:
        return f"<UserProgram {self.target!r} on {self.ctx.device_name or '?'}>"

    def load(self) -> Handler:
        """Import the module and find the callable (once); ScenarioError if that fails."""
        if self._handler is None:
            self._handler = self._import()
        return self._handler

    def _problem(self, message: str) -> ScenarioError:
        place = self.ctx.place
        return ScenarioError(Problem(f"{place}.{self.KEY}" if place else self.KEY, message, None,
                                     self.ctx.source or None))

    def _import(self) -> Handler:
        module_name, attr = split_target(self.target)
        try:
            module = _import_file(module_name) if module_name.endswith(".py") else (
                importlib.import_module(module_name))
        except Exception as exc:  # user code: any error while importing it is reported
            raise self._problem(f"cannot import {module_name!r}: "
                                f"{type(exc).__name__}: {exc}") from exc
        obj: Any = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise self._problem(f"{module_name!r} has no attribute {attr!r}") from None
        if not callable(obj):
            raise self._problem(f"{self.target!r} is not callable")
        handler: Handler = obj
        return handler

    async def run(self) -> None:
        handler = self.load()
        result = handler(self.ctx)
        if not inspect.isawaitable(result):
            raise self._problem(f"{self.target!r} must be an async function "
                                "(async def handler(ctx) -> None)")
        await result


def _import_file(path: str) -> ModuleType:
    full = os.path.abspath(path)
    name = "netvirt_user_" + re.sub(r"\W", "_", os.path.splitext(full)[0].lstrip(os.sep))
    if name in sys.modules:
        return sys.modules[name]
    if not os.path.isfile(full):
        raise FileNotFoundError(f"no such file: {full}")
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {full} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module

"""pytest plugin (registered by entry point when netvirt is installed).

Fixtures, all torn down even when the test fails:

``netvirt_lab``
    An async factory: ``topo = await netvirt_lab("scenarios/s4.yaml", n=3)``
    builds a live :class:`~netvirt.Topology` from a scenario file (or a
    ``Scenario``) under a unique lab name, so tests can run in parallel
    (pytest-xdist); every lab made is torn down after the test.
``netvirt_topology``
    The topology named by the test's marker
    ``@pytest.mark.netvirt_scenario("path.yaml", **params)``.
``netvirt_netns``
    A scratch :class:`~netvirt.Namespace`, deleted after the test.

They need root; without it they skip with the reason. Async tests need
pytest-asyncio (``asyncio_mode = auto`` or ``@pytest.mark.asyncio``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the plugin then offers no fixtures
    pytest_asyncio = None  # type: ignore[assignment]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "netvirt_scenario(path, **params): scenario for the netvirt_topology fixture")


def unique_lab_name(prefix: str = "t") -> str:
    """A lab name unique across processes and xdist workers (at most 12 chars)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    tag = worker.replace("gw", "")[:3]
    return f"{prefix}{tag}{secrets.token_hex(3)}"[:12]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("netvirt fixtures create namespaces and devices: run the tests as root")


LabFactory = Callable[..., Awaitable[Any]]

if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def netvirt_lab() -> AsyncIterator[LabFactory]:
        from netvirt.scenario import Scenario, load
        from netvirt.topology.builder import Topology

        _need_root()
        labs: list[Topology] = []

        async def make(scenario: str | Path | Scenario, *, name: str | None = None,
                       **params: Any) -> Topology:
            s = scenario if isinstance(scenario, Scenario) else load(
                scenario, {k: str(v) for k, v in params.items()} or None)
            topo = Topology(s.with_name(name or unique_lab_name()))
            await topo.build()
            labs.append(topo)
            return topo

        try:
            yield make
        finally:
            errors = []
            for topo in reversed(labs):  # every lab, even if one teardown fails
                try:
                    await topo.teardown()
                except Exception as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]

    @pytest_asyncio.fixture
    async def netvirt_topology(request: pytest.FixtureRequest, netvirt_lab: LabFactory) -> Any:
        marker = request.node.get_closest_marker("netvirt_scenario")
        if marker is None or not marker.args:
            raise pytest.UsageError(
                "netvirt_topology needs @pytest.mark.netvirt_scenario('file.yaml', **params)")
        path = Path(marker.args[0])
        if not path.is_absolute():
            path = Path(request.config.rootpath) / path
        return await netvirt_lab(path, **marker.kwargs)

    @pytest_asyncio.fixture
    async def netvirt_netns() -> AsyncIterator[Any]:
        from netvirt.netns import Namespace

        _need_root()
        ns = await Namespace.create(f"nv-{unique_lab_name('ns')}")
        try:
            yield ns
        finally:
            await ns.close()

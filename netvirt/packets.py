"""Compatibility name: the packet code lives in :mod:`netvirt.wire.packets`."""

from netvirt.wire.packets import *  # noqa: F403
from netvirt.wire.packets import __all__ as __all__  # noqa: F401

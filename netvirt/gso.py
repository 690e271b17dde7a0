"""Compatibility name: the GSO code lives in :mod:`netvirt.wire.gso`."""

from netvirt.wire.gso import *  # noqa: F403
from netvirt.wire.gso import __all__ as __all__  # noqa: F401

"""Compatibility name: the program base lives in :mod:`netvirt.programs._program`."""

from netvirt.programs._program import *  # noqa: F403
from netvirt.programs._program import __all__ as __all__  # noqa: F401

"""Compatibility name (0.1.0): the program base is split into ``_program``
(context, ``Program``), ``_params`` (param parsing) and ``_tunnel`` (the tunnel engine)."""

from netvirt.programs._params import IPAddress, check_keys, parse_endpoint, parse_ip
from netvirt.programs._program import OpenSocket, Program, ProgramContext
from netvirt.programs._tunnel import TunnelProgram

__all__ = ["IPAddress", "OpenSocket", "Program", "ProgramContext", "TunnelProgram", "check_keys",
           "parse_endpoint", "parse_ip"]

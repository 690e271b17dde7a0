"""A user program for a tun: answer every ICMP echo request, count what it saw.

Used by ``scenarios/s1d-user-program.yaml`` as ``python: handlers/tun_echo.py:handle``
(a relative path is taken relative to the scenario file).
"""

from netvirt import packets
from netvirt.programs import ProgramContext


async def handle(ctx: ProgramContext) -> None:
    ctx.counters.update(seen=0, answered=0)
    greeting = ctx.params.get("greeting", "")
    while True:
        for packet in await ctx.port.read_batch():
            ctx.counters["seen"] += 1
            reply = packets.echo_reply_ip(packet)
            if reply is not None and ctx.port.write_nowait(reply):
                ctx.counters["answered"] += 1
                ctx.counters["greeted"] = len(greeting)

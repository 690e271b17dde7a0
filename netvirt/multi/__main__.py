"""``python -m netvirt.multi --version | agent``: the machine side, until the CLI has the verb."""

from __future__ import annotations

import sys

from netvirt import __version__


def main(argv: list[str]) -> int:
    if argv[:1] == ["--version"]:
        print(f"netvirt {__version__}")
        return 0
    if argv[:1] == ["agent"]:
        from netvirt.multi.agent import main as agent_main

        return agent_main("uvloop" if "--loop=uvloop" in argv else "asyncio")
    print("usage: python -m netvirt.multi --version | agent", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

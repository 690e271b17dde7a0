"""``python -m netvirt.multi --version | agent | VERB...``: netvirt plus the machine side's verbs."""

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
    from netvirt.cli import main as cli_main

    return cli_main(argv)  # every other verb is netvirt's own


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

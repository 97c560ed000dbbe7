"""The `octotrace` command. Subcommands: `gpu-agent` (octotrace/gpu_agent.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from octotrace import gpu_agent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="octotrace", description="Octotrace SDK tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    agent = commands.add_parser(
        "gpu-agent",
        help="sample this host's NVIDIA GPUs (NVML) and export them to the server as OTLP metrics",
        description=(gpu_agent.__doc__ or "").split("\n\n")[0],
    )
    gpu_agent.add_arguments(agent)
    agent.set_defaults(run=gpu_agent.main)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

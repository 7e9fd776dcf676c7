"""``python -m services a|b``: run one service in its own uvicorn process, settings from env."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from services.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services", description=__doc__)
    parser.add_argument("service", choices=["a", "b"])
    args = parser.parse_args(argv)
    settings = load_settings(args.service)  # exits with a clear message on bad settings
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.service.upper()} %(message)s")
    uvicorn.run(
        f"services.{args.service}:make_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

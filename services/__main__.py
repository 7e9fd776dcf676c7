"""``python -m services a|b``: run one service in its own uvicorn process, settings from env."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from services.logs import configure_logging
from services.settings import load_settings, public_host_warning


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services", description=__doc__)
    parser.add_argument("service", choices=["a", "b"])
    args = parser.parse_args(argv)
    settings = load_settings(args.service)  # exits with a clear message on bad settings
    configure_logging(args.service, settings.log_level, settings.log_format)
    if (warning := public_host_warning(settings.host)) is not None:
        logging.getLogger("services").warning("warning: %s", warning)
    uvicorn.run(
        f"services.{args.service}:make_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep ours: uvicorn's own and access lines in the services' shape
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()

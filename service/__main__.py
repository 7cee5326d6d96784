"""``python -m service [--host 127.0.0.1] [--port 8000]``: the API, configured from the environment
(see ``service.settings``)."""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn

from service.api import create_app
from service.settings import ServiceSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServiceSettings.from_env()
    source = "CURATION_API_TOKEN" if os.environ.get("CURATION_API_TOKEN") else settings.state_dir / "api_token"
    logging.getLogger("service").info("bearer token for mutating calls: %s", source)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

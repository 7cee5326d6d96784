"""``python -m service [--host 127.0.0.1] [--port 8000] [--ssl-keyfile K --ssl-certfile C]``: the API,
configured from the environment (see ``service.settings``).

``python -m service stop``: stop the local Ray head the service started (recorded in its state
dir). Jobs still running on it are killed with it; their runs resume from their last complete
shard when submitted again. A cluster named by ``RAY_JOBS_ADDRESS`` is never stopped from here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from service.settings import ServiceSettings


def stop_local_ray(settings: ServiceSettings) -> str:
    from service import local_ray

    record = settings.state_dir / "ray_head.json"
    if not record.exists():
        return f"no local Ray head recorded in {settings.state_dir}: nothing to stop"
    head = json.loads(record.read_text())
    local_ray.stop_node(head["pgid"])
    record.unlink()
    return f"stopped the local Ray head at {head['gcs_address']} (its running jobs were killed with it)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["serve", "stop"], default="serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ssl-keyfile", help="serve HTTPS with this key (and --ssl-certfile)")
    parser.add_argument("--ssl-certfile")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServiceSettings.from_env()
    if args.command == "stop":
        print(stop_local_ray(settings))
        return 0
    if bool(args.ssl_keyfile) != bool(args.ssl_certfile):
        parser.error("give both --ssl-keyfile and --ssl-certfile, or neither")
    import uvicorn

    from service.api import create_app

    source = "CURATION_API_TOKEN" if os.environ.get("CURATION_API_TOKEN") else settings.state_dir / "api_token"
    logging.getLogger("service").info("bearer token for mutating calls: %s; hosts answered: %s", source, ", ".join(settings.allowed_hosts))
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning",
                ssl_keyfile=args.ssl_keyfile, ssl_certfile=args.ssl_certfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())

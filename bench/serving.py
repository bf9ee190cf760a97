"""Serve an ASGI app factory the way ``ticketing serve`` serves the product.

The baselines must run on the same server settings as the service, so this reads the
same TICKETING_HOST / TICKETING_PORT and uses the same server options as
``services.api.server``.
"""

from __future__ import annotations

import os


def server_options() -> dict[str, object]:
    """uvicorn options: the product's own (services.api.server) when it is built."""
    from services.settings import load_settings

    try:
        from services.api.server import _config_kwargs
    except ImportError:
        return {
            "host": os.environ.get("TICKETING_HOST", "127.0.0.1"),
            "port": int(os.environ.get("TICKETING_PORT", "8000")),
            "loop": "uvloop",
            "http": "httptools",
            "lifespan": "on",
            "access_log": False,
            "log_level": "warning",
        }
    return dict(_config_kwargs(load_settings()))


def serve_factory(factory: str, *, workers: int = 1) -> None:
    import uvicorn

    options = server_options()
    if workers > 1:
        options["workers"] = workers
    uvicorn.run(factory, factory=True, **options)  # type: ignore[arg-type]


def product_app() -> object:
    """ASGI factory for the product, for checkouts without ``services.api.server``."""
    from services.api.app import create_app
    from services.settings import load_settings

    return create_app(load_settings())


if __name__ == "__main__":  # python -m bench.serving [--workers N]: the product, via uvicorn
    import argparse

    p = argparse.ArgumentParser(prog="bench.serving")
    p.add_argument("--workers", type=int, default=1)
    serve_factory("bench.serving:product_app", workers=p.parse_args().workers)

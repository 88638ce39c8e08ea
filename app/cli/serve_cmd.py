"""`ctscribe serve [--checkpoint X] [--host 127.0.0.1] [--port 8000]`: the HTTP service (uvicorn).

Other settings come from `CTSCRIBE_*` environment variables (app/settings.py documents each); API keys only
from the environment, never the command line (it is visible to every local user).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the HTTP service", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint dir or hub id (default: bundled demo; `tiny` for tests)")
    parser.add_argument("--host", help="bind address (default 127.0.0.1; others need CTSCRIBE_API_KEYS)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--log-level", default=None, choices=["critical", "error", "warning", "info", "debug"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from app.main import create_app

    overrides = {k: v for k, v in {"checkpoint": args.checkpoint, "host": args.host, "port": args.port,
                                   "device": args.device, "log_level": args.log_level}.items() if v is not None}
    settings = load_settings(overrides)
    settings.check_bind()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=False, timeout_graceful_shutdown=30, timeout_keep_alive=int(settings.keep_alive_s),
                server_header=False)  # no `server: uvicorn`: the stack is nobody's business
    return 0


def load_settings(overrides: dict):
    """`Settings` from the environment and `overrides`; a bad value is one clear `invalid_request` line
    naming the variable and the rule, never the value (it may be an API key)."""
    from pydantic import ValidationError

    from app.settings import Settings
    from ctscribe.errors import CtscribeError, ErrorCode

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"CTSCRIBE_{str(error['loc'][0]).upper() if error['loc'] else 'SETTINGS'}: "
            f"{error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors(include_input=False)
        )
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"invalid settings: {problems}") from None

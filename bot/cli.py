"""The `rollcall` command: `rollcall run` starts the bot, `rollcall demo` runs the sandbox story."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from bot.config import ConfigError, load_settings, require

logger = logging.getLogger("rollcall")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The Slack SDK logs request bodies at DEBUG; keep them out even when we debug ourselves.
    logging.getLogger("slack_sdk").setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run(http_port: int | None = None) -> int:
    """Start the bot in Socket Mode (SLACK_APP_TOKEN set) or HTTP mode, until interrupted."""
    try:
        settings = load_settings()
        require(settings, http_mode=not settings.socket_mode)
    except ConfigError as error:
        print(f"rollcall: {error}", file=sys.stderr)
        return 2
    # Listener modules import slack_bolt; bot/ itself must not, so they are loaded here.
    from bot.app import Rollcall
    from handlers.app import create_app

    rollcall = Rollcall(settings)
    app = create_app(rollcall, socket_mode=settings.socket_mode)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rollcall.start()
    try:
        if settings.socket_mode:
            from handlers.server import connect_socket_mode

            connection = connect_socket_mode(app, settings.slack_app_token)
            _wait(stop)
            connection.close()
        else:
            from handlers.server import HttpServer

            server = HttpServer(app, port=http_port if http_port is not None else settings.port).start()
            _wait(stop)
            server.stop()
    finally:
        rollcall.stop()
    return 0


def _wait(stop: threading.Event) -> None:
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rollcall", description=__doc__)
    parser.add_argument(
        "--log-level", default=os.environ.get("ROLLCALL_LOG_LEVEL", "INFO"), help="logging level (default INFO)"
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="start the bot (the default)")
    demo = commands.add_parser("demo", help="run a whole rollout on the local Vast and Slack sandbox")
    demo.add_argument("--fail", action="store_true", help="make the new model fail to load")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        # The demo lives in sandbox/, which bot/ never imports; it runs as its own process.
        command = [sys.executable, "-m", "sandbox.demo", *(["--fail"] if args.fail else []), *rest]
        os.execv(sys.executable, command)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    configure_logging(args.log_level)
    return run()


if __name__ == "__main__":
    raise SystemExit(main())

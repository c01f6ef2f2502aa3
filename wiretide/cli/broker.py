"""`wiretide broker start|stop|status`: the local one-node Kafka broker."""

from __future__ import annotations

import argparse

from schemas import config
from schemas.config import Settings
from schemas.errors import BrokerError
from wiretide.broker import local_broker
from wiretide.cli.options import common

NAME = "broker"
HELP = "run the local one-node Kafka broker"


def _broker_port(text: str) -> int:
    try:
        return config.checked_port(text, "port")
    except BrokerError as ex:
        raise argparse.ArgumentTypeError(str(ex).removeprefix("port ")) from None


def add_arguments(broker: argparse.ArgumentParser) -> None:
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.add_argument(
        "--port",
        type=_broker_port,
        help="listener port (default: where this data dir's broker runs or last ran, else "
        "9092 or a free one); the controller takes the next port",
    )
    common(broker, kafka=False, store=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    starting = args.action == "start"
    if starting:
        settings = settings.replace(data=settings.writable_data())
    broker = local_broker(settings, args.port)
    if starting:
        print(f"Kafka broker up at {broker.start()}")
    elif args.action == "stop":
        print("Kafka broker stopped" if broker.stop() else "no Kafka broker was running")
    else:
        up = broker.is_up()
        print(f"Kafka broker {'up at ' + broker.bootstrap if up else 'not running'}")
        return 0 if up else 1
    return 0

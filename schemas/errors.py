"""User-facing errors: each carries one line saying what went wrong and what to do."""


class WiretideError(Exception):
    """Base of every error the CLI reports as one line (exit code 2)."""


class BrokerError(WiretideError):
    """The local Kafka broker could not be fetched, started or reached."""

"""What both command-line programs share: fatal-error exits and signal handling."""
import logging
import signal
import sys
from typing import Callable, NoReturn


def fatal(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr, then exit non-zero."""
    sys.stderr.write("error: %s\n" % message)
    sys.stderr.flush()
    raise SystemExit(code)


def on_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask for a clean stop (exit code 0)."""
    def handler(signum, _frame):
        logging.getLogger("radical_orbit").info("received %s: stopping", signal.Signals(signum).name)
        stop()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

import logging
import signal
import threading

from django.core.management.base import BaseCommand

from hubbub.connectors.streams import REFRESH_SECONDS, StreamSupervisor


class Command(BaseCommand):
    help = (
        "Consume the X filtered stream and Bluesky Jetstream of every account that wants one, until "
        "SIGTERM or Ctrl-C. `hubbub worker` does this too unless started with --no-streams."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--refresh",
            type=float,
            default=REFRESH_SECONDS,
            help="seconds between looks for added, changed or disabled accounts and changed rules",
        )

    def handle(self, refresh: float, **options):
        logging.getLogger("hubbub").setLevel(logging.INFO)
        stop = threading.Event()

        def request_stop(*_args) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        supervisor = StreamSupervisor(stop, refresh=max(0.5, refresh))
        # In the main thread: it returns once every consumer has saved its cursor and stopped.
        supervisor.run()
        self.stdout.write("streams stopped")

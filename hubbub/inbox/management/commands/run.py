import os
import subprocess
import sys

from django.core.management.base import BaseCommand, CommandError

from hubbub.demo import (
    BRANDS,
    DEMO_PASSWORD,
    DEMO_PORT,
    load_demo,
    start_forum,
    start_instances,
    start_live_customers,
)
from hubbub.wsgi import application

DEMO_HELP = """Log in as agent / {password} (customer service), sales / {password} (sales, marketing),
supervisor / {password} or admin / {password} (everything).
Each demo brand has a Mastodon account on a local Mastodon-format instance (127.0.0.1:8765-8767), where your
replies are published; a new customer post arrives every 45 s. Northwind Air also listens to a travel forum's
RSS feed (127.0.0.1:8768).
"""


class Command(BaseCommand):
    help = "Start the web server and the worker. --demo also loads the demo and starts its Mastodon instances."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--demo", action="store_true", help="load the demo and serve its local Mastodon instances")
        parser.add_argument("--no-worker", action="store_true", help="web server only")
        parser.add_argument("--no-streams", action="store_true", help="the worker does not consume streams")
        parser.add_argument("--threads", type=int, default=8)

    def handle(self, host: str, port: int, demo: bool, no_worker: bool, no_streams: bool, threads: int, **options):
        from waitress import serve

        servers = []
        env = dict(os.environ)
        if demo:
            servers = self._start_demo()
            # The demo's servers listen on 127.0.0.1, which outbound calls refuse by default.
            env["HUBBUB_ALLOW_PRIVATE_URLS"] = "1"
        worker = None
        if not no_worker:
            command = [sys.executable, "-m", "hubbub", "worker", *(["--no-streams"] if no_streams else [])]
            worker = subprocess.Popen(command, env=env)  # noqa: S603
        url = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"\nhubbub is running at {url}"))
        if demo:
            self.stdout.write(DEMO_HELP.format(password=DEMO_PASSWORD))
        self.stdout.write("Press Ctrl-C to stop.\n")
        try:
            serve(application, host=host, port=port, threads=threads, ident="hubbub")
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)
            for server in servers:
                server.stop()

    def _start_demo(self) -> list:
        organizations = load_demo()
        try:
            mastodons = start_instances()
            forum = start_forum(organizations[0])
        except OSError as exc:
            raise CommandError(
                f"cannot start the demo's local servers on ports {DEMO_PORT}-{DEMO_PORT + len(BRANDS)}: {exc}. "
                "Is another hubbub demo running?"
            ) from exc
        start_live_customers(mastodons)
        return [*mastodons, forum]

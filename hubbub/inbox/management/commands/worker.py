import logging

from django.core.management.base import BaseCommand
from tqdm import tqdm

from hubbub.connectors.models import EventState, InboundEvent
from hubbub.worker import Worker


class Command(BaseCommand):
    help = (
        "Poll accounts, consume streams, turn events into cases and publish replies. "
        "--drain: process what is pending, then exit."
    )

    def add_arguments(self, parser):
        parser.add_argument("--drain", action="store_true", help="process everything pending, then exit")
        parser.add_argument("--poll", action="store_true", help="with --drain: poll due accounts too")
        parser.add_argument(
            "--no-streams",
            action="store_true",
            help="do not consume the X filtered stream and Bluesky Jetstream here (run `hubbub stream` elsewhere)",
        )
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, drain: bool, poll: bool, no_streams: bool, batch_size: int, no_progress: bool, **options):
        logging.getLogger("hubbub").setLevel(logging.INFO)
        if not drain:
            Worker(poll=True, batch_size=batch_size, streams=not no_streams).run_forever()
            return
        # Streams never end, so a drain (which must exit) never starts them.
        worker = Worker(poll=poll, batch_size=batch_size)
        pending = InboundEvent.objects.filter(state=EventState.PENDING).count()
        with tqdm(total=pending, desc="processing events", unit=" events", disable=no_progress) as bar:

            def progress(tally):
                bar.update(tally.processed - bar.n)

            tally = worker.drain(on_progress=progress)
        failed = InboundEvent.objects.filter(state=EventState.FAILED).count()
        self.stdout.write(
            f"{tally.processed} events processed, {tally.published} replies published"
            + (f"; {failed} events in the dead-letter view" if failed else "")
        )

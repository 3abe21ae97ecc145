"""Give back to the queue the cases of agents who went away or sat idle on them.

Run it every minute or so (cron, or the worker's timer loop) for every organization.
"""

from datetime import timedelta

from django.core.management.base import BaseCommand

from hubbub.accounts.models import Organization
from hubbub.routing.actions import DEFAULT_IDLE_LIMIT, do_requeue_idle


class Command(BaseCommand):
    help = "Requeue cases held by agents who are away or idle past a limit."

    def add_arguments(self, parser):
        parser.add_argument(
            "--idle-minutes",
            type=int,
            default=int(DEFAULT_IDLE_LIMIT.total_seconds() // 60),
            help="minutes without a reply or note after which a held case goes back to the queue",
        )

    def handle(self, *args, idle_minutes: int, **options):
        if idle_minutes < 1:
            self.stderr.write("--idle-minutes must be at least 1")
            raise SystemExit(2)
        total = 0
        for organization_id in Organization.objects.values_list("id", flat=True):
            total += do_requeue_idle(organization_id, timedelta(minutes=idle_minutes))
        self.stdout.write(f"{total} case{'s' if total != 1 else ''} requeued")

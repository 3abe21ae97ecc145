import logging

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from hubbub.connectors.actions import PollOutcome, do_backfill_account
from hubbub.connectors.models import SocialAccount


class Command(BaseCommand):
    help = (
        "Backfill an account: fetch until it has caught up, with a progress bar. Every batch is stored "
        "with its cursor, so an interrupted backfill resumes where it stopped when run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("account_id", type=int)
        parser.add_argument(
            "--max-wait",
            type=float,
            default=900.0,
            help="longest rate-limit wait (seconds) to sit out before giving up; the worker carries on later",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, account_id: int, max_wait: float, no_progress: bool, **options):
        logging.getLogger("hubbub").setLevel(logging.WARNING)
        account = SocialAccount.objects.filter(pk=account_id).first()
        if account is None:
            raise CommandError(f"no account {account_id}")
        if account.settings.get("imported"):
            raise CommandError(f"{account} holds imported posts only; there is nothing to fetch")
        if not account.healthy:
            raise CommandError(f"{account} is disabled: {account.last_error or 'no reason recorded'}")
        with tqdm(desc=f"backfilling {account}", unit=" posts", disable=no_progress) as bar:

            def on_round(outcome: PollOutcome) -> None:
                bar.update(outcome.fetched)
                if outcome.error and outcome.retry_in is not None:
                    bar.set_postfix_str(f"waiting {outcome.retry_in:.0f}s: {outcome.error[:60]}")

            try:
                report = do_backfill_account(account, on_round=on_round, max_wait=max_wait)
            except KeyboardInterrupt:
                self.stderr.write("interrupted: what was fetched is stored; run the same command again to resume")
                raise SystemExit(130) from None
        if report.permanent:
            raise CommandError(f"{account} was disabled: {report.error}")
        summary = f"{report.fetched} posts fetched, {report.stored} new, in {report.rounds} fetches"
        if report.error:
            raise CommandError(f"{summary}; stopped: {report.error}. The worker will go on from here.")
        self.stdout.write(f"{account} has caught up: {summary}.")

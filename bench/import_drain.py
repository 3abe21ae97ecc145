"""Import a Customer Support on Twitter file and drain it through the pipeline, timed in one process.

    .venv/bin/python bench/import_drain.py ../shared/data/twcs/twcs_first5000.csv [--repeat 5] [--profile]

Each run uses a fresh SQLite database in a temporary directory (the embedded default), so the
figure is import + threading + classification + routing + writes, end to end, on one core.
Runs are repeated because a shared virtual machine's timings wander; the median is the figure.
"""

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ["HUBBUB_VAR_DIR"] = tempfile.mkdtemp(prefix="hubbub-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubbub.settings")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from hubbub.accounts.actions import do_create_organization
    from hubbub.connectors import noise
    from hubbub.connectors.actions import do_import_file
    from hubbub.connectors.models import InboundEvent
    from hubbub.inbox.models import Case, Message
    from hubbub.playbook.actions import do_publish_default_playbook
    from hubbub.worker import Worker

    results = []
    for run in range(args.repeat):
        connection.close()
        # Every run starts a new database whose ids repeat: per-process memory must start empty too.
        noise._memories.clear()
        connection.settings_dict["NAME"] = str(Path(os.environ["HUBBUB_VAR_DIR"]) / f"run{run}.sqlite3")
        call_command("migrate", verbosity=0)
        org = do_create_organization("Bench", "bench")
        do_publish_default_playbook(org)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        started, cpu_started = time.perf_counter(), time.process_time()
        report = do_import_file(args.path, org)
        imported = time.perf_counter()
        tally = Worker(poll=False).drain()
        finished, cpu = time.perf_counter(), time.process_time() - cpu_started
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "tottime")).print_stats(
                int(os.environ.get("BENCH_ROWS", "25"))
            )
        events = InboundEvent.objects.count()
        results.append((imported - started, finished - imported, finished - started, cpu))
        print(
            f"run {run + 1}: {report.read} rows -> {tally.processed} events -> {Case.objects.count()} cases, "
            f"{Message.objects.count()} messages; import {imported - started:.3f} s, "
            f"drain {finished - imported:.3f} s, end to end {finished - started:.3f} s "
            f"({events / (finished - started):,.0f} events/s; CPU {cpu:.3f} s)"
        )
    total = statistics.median(r[2] for r in results)
    print(
        f"median of {len(results)}: import {statistics.median(r[0] for r in results):.3f} s, "
        f"drain {statistics.median(r[1] for r in results):.3f} s, end to end {total:.3f} s "
        f"= {events / total:,.0f} events/s (best {events / min(r[2] for r in results):,.0f}); "
        f"CPU median {statistics.median(r[3] for r in results):.3f} s"
    )


if __name__ == "__main__":
    main()

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from hubbub.accounts.models import Organization
from hubbub.lib.classify import classify
from hubbub.lib.metrics import Report
from hubbub.lib.textmodel import TextModel, TextModelError
from hubbub.understanding.actions import (
    UnderstandingError,
    active_model,
    check_task,
    evaluate_model,
    read_labelled_csv,
)
from hubbub.understanding.models import TASK_LABELS, TrainedModel


def resolve_organization(slug: str) -> Organization | None:
    """The named organization; without a name, the only one there is, or None when there is none."""
    if slug:
        try:
            return Organization.objects.get(slug=slug)
        except Organization.DoesNotExist as exc:
            raise CommandError(f"no organization {slug!r}") from exc
    organizations = list(Organization.objects.order_by("id")[:2])
    if len(organizations) > 1:
        raise CommandError("there are several organizations: name one with --organization SLUG")
    return organizations[0] if organizations else None


class Command(BaseCommand):
    help = (
        "Measure a classifier on a labelled CSV (columns text and label): accuracy, macro-F1, macro recall, "
        "per-class figures and the confusion matrix."
    )

    def add_arguments(self, parser):
        parser.add_argument("task", choices=list(TASK_LABELS))
        parser.add_argument("path", type=Path)
        parser.add_argument("--label-column", default="", help="column with the true labels (default: label)")
        parser.add_argument("--organization", default="", help="organization slug (default: the only one)")
        parser.add_argument(
            "--model",
            default="current",
            help="current (the organization's active model, else the shipped default), default, or a version number",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, task: str, path: Path, label_column: str, organization: str, model: str, **options):
        check_task(task)
        try:
            posts = read_labelled_csv(path, task, label_column)
        except UnderstandingError as exc:
            raise CommandError(str(exc)) from exc
        try:
            name, text_model = self._model(task, organization, model)
        except DatabaseError as exc:
            raise CommandError(f"the database is not ready ({exc}); run `hubbub migrate` first") from exc
        classifications = [classify(t) for t in posts.texts]
        report = evaluate_model(text_model, task, posts.texts, posts.labels, classifications)
        if options["json"]:
            data = {"task": task, "model": name, "posts": len(posts.texts), "skipped": posts.skipped}
            data.update(report.as_dict())
            self.stdout.write(json.dumps(data))
        else:
            self._print(task, name, len(posts.texts), posts.skipped, report)

    def _model(self, task: str, slug: str, choice: str) -> tuple[str, TextModel | None]:
        if choice == "default":
            return "default", None
        org = resolve_organization(slug)
        if choice == "current":
            if org is None:
                return "default", None
            version, text_model = active_model(org.pk, task)
            return (f"{org.slug} {task} version {version}", text_model) if version else ("default", None)
        if not choice.isdigit():
            raise CommandError(f"--model {choice!r}: use current, default or a version number")
        if org is None:
            raise CommandError("there is no organization, so no trained versions")
        data = (
            TrainedModel.objects.filter(organization=org, task=task, version=int(choice))
            .values_list("model", flat=True)
            .first()
        )
        if data is None:
            raise CommandError(f"{org.slug} has no {task} model version {choice}")
        try:
            return f"{org.slug} {task} version {choice}", TextModel.from_bytes(bytes(data))
        except TextModelError as exc:
            raise CommandError(f"version {choice}: {exc}") from exc

    def _print(self, task: str, name: str, n: int, skipped: int, report: Report) -> None:
        write = self.stdout.write
        write(f"{task}: model {name}, {n} posts" + (f" ({skipped} rows with empty text skipped)" if skipped else ""))
        write(f"accuracy      {report.accuracy:.4f}")
        write(f"macro-F1      {report.macro_f1:.4f}")
        write(f"macro recall  {report.macro_recall:.4f}")
        width = max(8, *(len(label) for label in report.labels))
        write("")
        write(f"{'label':<{width}}  precision  recall      f1  support")
        for label in report.labels:
            f = report.per_class[label]
            write(f"{label:<{width}}  {f.precision:9.4f}  {f.recall:6.4f}  {f.f1:6.4f}  {f.support:7d}")
        write("")
        write("confusion matrix (rows: true label, columns: predicted)")
        cell = 2 + max(
            6, *(len(label) for label in report.labels), *(len(str(v)) for row in report.confusion for v in row)
        )
        write(" " * width + "".join(f"{label:>{cell}}" for label in report.labels))
        for label, row in zip(report.labels, report.confusion, strict=True):
            write(f"{label:<{width}}" + "".join(f"{v:>{cell}}" for v in row))

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from hubbub.accounts.models import Organization
from hubbub.lib.metrics import evaluate
from hubbub.understanding.actions import (
    LabelledPosts,
    UnderstandingError,
    corrections,
    cross_validate,
    default_predict,
    describe_scores,
    do_rollback_model,
    do_train_model,
    encoder_in_use,
    read_labelled_csv,
)
from hubbub.understanding.management.commands.evaluate import resolve_organization
from hubbub.understanding.models import TASK_LABELS


class Command(BaseCommand):
    help = (
        "Train an organization's classifier for a task from a labelled CSV, or from its agents' label "
        "corrections; it becomes active only if it is not worse than the model in use on held-out posts."
    )

    def add_arguments(self, parser):
        parser.add_argument("task", choices=list(TASK_LABELS))
        parser.add_argument("path", type=Path, nargs="?", help="CSV with text and label (default: the corrections)")
        parser.add_argument("--organization", default="", help="organization slug (default: the only one)")
        parser.add_argument("--label-column", default="", help="column with the labels (default: label)")
        parser.add_argument("--force", action="store_true", help="make the new model active even if it is worse")
        parser.add_argument("--rollback", action="store_true", help="re-activate the previous version, train nothing")
        parser.add_argument(
            "--cross-validate", type=int, metavar="K", default=0, help="report K-fold macro-F1 only; store nothing"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split and the folds")

    def handle(self, task: str, path: Path | None, organization: str, **options):
        try:
            if options["rollback"]:
                self._rollback(task, self._organization(organization))
            elif options["cross_validate"]:
                posts = self._posts(task, path, organization, options["label_column"])
                self._cross_validate(task, posts, options["cross_validate"], options["seed"])
            else:
                org = self._organization(organization)
                posts = self._posts(task, path, organization, options["label_column"], org)
                self._train(task, org, posts, path, options["force"], options["seed"])
        except UnderstandingError as exc:
            raise CommandError(str(exc)) from exc

    def _organization(self, slug: str) -> Organization:
        org = resolve_organization(slug)
        if org is None:
            raise CommandError("there is no organization yet: create one first")
        return org

    def _posts(
        self, task: str, path: Path | None, slug: str, label_column: str, org: Organization | None = None
    ) -> LabelledPosts:
        if path is not None:
            posts = read_labelled_csv(path, task, label_column)
            if posts.skipped:
                self.stdout.write(f"{posts.skipped} rows with empty text skipped")
            return posts
        org = org or self._organization(slug)
        posts = corrections(org, task)
        self.stdout.write(f"{len(posts.texts)} {task} label corrections of {org.slug}")
        return posts

    def _features(self) -> None:
        why_not = encoder_in_use()
        if why_not is None:
            self.stdout.write("Features: word and character n-grams, and the pretrained encoder (slower to train).")
        else:
            self.stdout.write(f"Features: word and character n-grams only; the pretrained encoder is {why_not}")

    def _train(
        self, task: str, org: Organization, posts: LabelledPosts, path: Path | None, force: bool, seed: int
    ) -> None:
        self._features()
        source = str(path) if path else "label corrections"
        outcome = do_train_model(org, task, posts.texts, posts.labels, force=force, seed=seed, source=source)
        new, current = outcome.new, outcome.current
        held = sum(f.support for f in new.per_class.values())
        self.stdout.write(
            f"Trained {org.slug} {task} version {outcome.trained.version} on {outcome.trained.training_size} posts; "
            f"held out {held}."
        )
        new_name = f"new (version {outcome.trained.version})"
        current_name = f"current ({outcome.current_name})"
        width = max(len(new_name), len(current_name))
        for name, report in ((new_name, new), (current_name, current)):
            self.stdout.write(f"  {name:<{width}}  macro-F1 {report.macro_f1:.4f}  accuracy {report.accuracy:.4f}")
        if outcome.promoted and new.macro_f1 < current.macro_f1:
            self.stdout.write(f"Version {outcome.trained.version} is worse but active: --force.")
        elif outcome.promoted:
            self.stdout.write(f"Version {outcome.trained.version} is now active (not worse than the current model).")
        else:
            self.stdout.write(
                f"Version {outcome.trained.version} is kept as a candidate: its macro-F1 is lower than the current "
                "model's. Use --force to make it active anyway."
            )

    def _rollback(self, task: str, org: Organization) -> None:
        previous = do_rollback_model(org, task)
        if previous is None:
            self.stdout.write(f"{org.slug} {task}: back to the shipped default.")
        else:
            self.stdout.write(f"{org.slug} {task}: version {previous.version} is active again.")

    def _cross_validate(self, task: str, posts: LabelledPosts, k: int, seed: int) -> None:
        self._features()
        scores = cross_validate(task, posts.texts, posts.labels, k, seed)
        default = evaluate(posts.labels, [p.label for p in default_predict(task, posts.texts)], TASK_LABELS[task])
        self.stdout.write(f"{k}-fold cross-validated macro-F1 of the trainable model on {len(posts.texts)} posts:")
        self.stdout.write("  folds: " + "  ".join(f"{s:.4f}" for s in scores))
        self.stdout.write(f"  mean:  {describe_scores(scores)}")
        self.stdout.write(f"shipped default on the same posts: macro-F1 {default.macro_f1:.4f}. Nothing was stored.")

import gc

from django.apps import AppConfig
from django.db.models import Field

from hubbub.db import Among

# Net new container objects between two young-generation collections (Python's default is 700).
GC_THRESHOLD = 10_000


class Config(AppConfig):
    name = "hubbub.inbox"
    label = "inbox"

    def ready(self) -> None:
        # A pipeline batch keeps thousands of objects alive until it commits (payloads, posts,
        # cases, messages). At the default threshold the collector ran about 200 times per 5,000
        # posts, walking them and everything older again and again: 0.22-0.29 s of a 1.5 s import
        # and drain (bench/import_drain.py). At 10,000 it runs about 12 times: 0.03 s.
        young, middle, old = gc.get_threshold()
        gc.set_threshold(max(young, GC_THRESHOLD), middle, old)
        Field.register_lookup(Among)

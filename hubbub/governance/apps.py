from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.governance"
    label = "governance"

from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.inbox"
    label = "inbox"

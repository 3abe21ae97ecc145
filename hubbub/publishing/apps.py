from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.publishing"
    label = "publishing"

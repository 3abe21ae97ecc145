from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.understanding"
    label = "understanding"

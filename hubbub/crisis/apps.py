from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.crisis"
    label = "crisis"
    verbose_name = "Crisis mode"

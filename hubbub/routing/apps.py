from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.routing"
    label = "routing"
    verbose_name = "Routing and assignment"

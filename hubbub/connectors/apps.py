from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.connectors"
    label = "connectors"

from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.listening"
    label = "listening"

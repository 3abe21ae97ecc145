from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.accounts"
    label = "accounts"

from django.apps import AppConfig


class Config(AppConfig):
    name = "hubbub.playbook"
    label = "playbook"

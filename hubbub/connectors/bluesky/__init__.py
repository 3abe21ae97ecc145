"""Bluesky (AT Protocol): notifications, keyword search, direct messages and a Jetstream consumer."""

from hubbub.connectors.bluesky.connector import BlueskyConnector, RateLimited, rkey_for
from hubbub.connectors.bluesky.jetstream import JetstreamConsumer, PostFilter

__all__ = ["BlueskyConnector", "JetstreamConsumer", "PostFilter", "RateLimited", "rkey_for"]

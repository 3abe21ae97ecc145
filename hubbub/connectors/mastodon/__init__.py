"""Mastodon connector: mentions and hashtag listening in, replies out."""

from hubbub.connectors.mastodon.connector import MastodonConnector, RateLimited

__all__ = ["MastodonConnector", "RateLimited"]

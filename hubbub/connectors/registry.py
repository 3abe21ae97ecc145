"""Which connector class reads and writes for a SocialAccount."""

from __future__ import annotations

from importlib import import_module

from hubbub.connectors.base import Connector

# network -> "module:Class". Imported lazily so a network's client library is only loaded when used.
CONNECTORS = {
    "mastodon": "hubbub.connectors.mastodon.connector:MastodonConnector",
    "rss": "hubbub.connectors.rss.connector:FeedConnector",
    "twitter": "hubbub.connectors.x.connector:XConnector",
    "reddit": "hubbub.connectors.reddit.connector:RedditConnector",
    "meta": "hubbub.connectors.meta.connector:MetaConnector",
    "bluesky": "hubbub.connectors.bluesky.connector:BlueskyConnector",
    "email": "hubbub.connectors.email.connector:EmailConnector",
}
# Accounts filled from a file rather than a live network.
IMPORT_CONNECTOR = "hubbub.connectors.twcs:TwcsConnector"


def connector_class(network: str, imported: bool = False) -> type:
    path = IMPORT_CONNECTOR if imported else CONNECTORS.get(network)
    if path is None:
        raise LookupError(f"no connector for network {network!r}")
    module, name = path.split(":")
    return getattr(import_module(module), name)


def connector_for(account) -> Connector:
    """A connector for a SocialAccount, built from its decrypted configuration."""
    imported = bool(account.settings.get("imported"))
    return connector_class(account.network, imported)(account.config())

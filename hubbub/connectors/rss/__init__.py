"""Read-only connector for blogs, forums and review sites through their RSS, RDF and Atom feeds."""

from hubbub.connectors.rss.connector import FeedConnector, FeedRejected

__all__ = ["FeedConnector", "FeedRejected"]

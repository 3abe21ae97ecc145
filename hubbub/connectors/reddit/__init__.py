"""Reddit connector: keyword listening in subreddits and the brand's inbox in, comments and messages out."""

from hubbub.connectors.reddit.connector import RateLimited, RedditConnector

__all__ = ["RateLimited", "RedditConnector"]

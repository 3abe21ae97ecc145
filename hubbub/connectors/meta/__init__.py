"""Meta connector: Facebook Page posts and comments, Messenger, Instagram comments and messages."""

from hubbub.connectors.meta.connector import MetaConnector, RateLimited
from hubbub.connectors.meta.webhook import SplitResult, split_webhook

__all__ = ["MetaConnector", "RateLimited", "SplitResult", "split_webhook"]

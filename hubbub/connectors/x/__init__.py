"""X (Twitter) API v2: the polling connector, the filtered-stream consumer and the webhook checks."""

from hubbub.connectors.x.connector import RateLimited, XConnector
from hubbub.connectors.x.stream import Backoff, FilteredStream, RuleSync, sync_rules
from hubbub.connectors.x.webhook import crc_response, verify_signature

__all__ = [
    "Backoff",
    "FilteredStream",
    "RateLimited",
    "RuleSync",
    "XConnector",
    "crc_response",
    "sync_rules",
    "verify_signature",
]

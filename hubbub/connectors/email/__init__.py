"""Email: IMAP in, SMTP out (standard library only)."""

from hubbub.connectors.email.connector import EmailConnector, html_to_text, parse_message, strip_quoted

__all__ = ["EmailConnector", "html_to_text", "parse_message", "strip_quoted"]

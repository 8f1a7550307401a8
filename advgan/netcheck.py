"""Is the network there? A quick probe before a download, so an offline machine fails at once, clearly.

Downloads (torchvision datasets, timm/Hugging Face weights) retry with back-off and can take a minute or
more to give up on a machine without internet. :func:`unreachable` opens one TCP connection with a
short timeout; :class:`OfflineError` is what callers raise when it fails.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

PROBE_TIMEOUT = 3.0  #: seconds


class OfflineError(ConnectionError):
    """A download was needed but the server cannot be reached (no internet access)."""


def unreachable(url_or_host: str, *, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when a TCP connection to the URL's host (port 443/80) opens within ``timeout``; else the reason."""
    if os.environ.get("ADVGAN_OFFLINE"):
        return "ADVGAN_OFFLINE is set"
    u = urlparse(url_or_host if "//" in url_or_host else f"https://{url_or_host}")
    host = u.hostname or url_or_host
    port = u.port or (80 if u.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{host}:{port} is unreachable ({e.strerror or type(e).__name__})"

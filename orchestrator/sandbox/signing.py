"""Presigned storage links: issue them and check them, as S3 does with its query-string auth.

A link carries `X-Expires` (unix seconds, millisecond precision so tiny lifetimes can be tested),
`X-Signature` (HMAC-SHA256 with a per-sandbox secret over method, path, expiry and md5) and, for
uploads, `X-Md5` (the base64 md5 the upload was announced with, or empty).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from urllib.parse import quote

from yarl import URL


class LinkCheck(enum.Enum):
    """What checking a presigned link found."""

    VALID = "valid"
    MISSING = "missing"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"


def storage_path(project_uuid: str, area: str, file_name: str) -> str:
    """The decoded path of a stored object; the signature covers exactly this."""
    return f"/_storage/{project_uuid}/{area}/{file_name}"


class LinkSigner:
    """Issues and verifies the sandbox's presigned storage URLs."""

    def __init__(self, ttl_seconds: float) -> None:
        self._secret = secrets.token_bytes(32)
        self._ttl_seconds = ttl_seconds

    def _signature(self, method: str, path: str, expires: str, md5: str) -> str:
        message = "\n".join((method, path, expires, md5)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, origin: URL, method: str, path: str, *, md5: str = "") -> str:
        """A URL on `origin` that allows `method` on `path` until the link lifetime runs out."""
        expires = f"{time.time() + self._ttl_seconds:.3f}"
        query = {"X-Expires": expires, "X-Signature": self._signature(method, path, expires, md5)}
        if method == "PUT":
            query["X-Md5"] = md5
        # Quote every segment ourselves so a name like "a%20b.jpg" survives the round trip.
        encoded = "/".join(quote(segment, safe="") for segment in path.split("/"))
        return str(origin.with_path(encoded, encoded=True).with_query(query))

    def check(self, method: str, path: str, query: Mapping[str, str]) -> LinkCheck:
        """Check a request's query-string auth for `method` on the decoded `path`."""
        expires = query.get("X-Expires")
        signature = query.get("X-Signature")
        if expires is None or signature is None:
            return LinkCheck.MISSING
        md5 = query.get("X-Md5", "") if method == "PUT" else ""
        expected = self._signature(method, path, expires, md5)
        if not hmac.compare_digest(expected, signature):
            return LinkCheck.BAD_SIGNATURE
        if time.time() > float(expires):
            return LinkCheck.EXPIRED
        return LinkCheck.VALID

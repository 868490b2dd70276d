"""Who may dial an endpoint: a token, or Sluice's signature (E6). `now` passed in.

Sluice dials the endpoint URL of the create item. An endpoint can require

- a shared token, in the URL's `token` query parameter (`ws://host/stt?token=...`, works
  with Cloudflare too) or, with E6's `headers`, an `Authorization: Bearer ...` header;
- a valid `Sluice-Signature` (the app has a signing secret), which binds the dial to its
  adapter id, the endpoint URL and a timestamp at most 5 minutes old.

The signature covers the endpoint exactly as written in the create item, which a server
cannot see: it sees its path and query and a `Host` header. `public_url` (the URL prefix
the create items use, e.g. `wss://bots.example.com/sluice`) says how to rebuild it;
without one it is `ws(s)://<Host><path>`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from sluice_endpoint.errors import SignatureError
from sluice_endpoint.signatures import (
    ADAPTER_ID_HEADER,
    TOLERANCE_S,
    Secrets,
    header,
    verify_dial,
)


@dataclass(frozen=True)
class Dial:
    """A dial's opening handshake, as the endpoint sees it.

    Attributes:
        target: the request target: path and query (`/stt?token=x`), below any mount.
        headers: the request headers.
        scheme: `ws` or `wss`, as this server was reached.
        root_path: where the endpoint is mounted (ASGI), prefixed to `target` in URLs.
    """

    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    scheme: str = "ws"
    root_path: str = ""

    @property
    def path(self) -> str:
        """`target` without its query."""
        return urlsplit(self.target).path or "/"

    @property
    def adapter_id(self) -> str | None:
        """`Sluice-Adapter-Id` (E6: on every dial of a Sluice with the extension)."""
        return header(self.headers, ADAPTER_ID_HEADER) or None


class DialCheck:
    """The endpoint's rule for accepting a dial.

    Args:
        token: a shared secret the dial must carry (query `token` or Bearer header).
        signing_secret: the app's signing secret (or several, while rotating one).
        public_url: the URL prefix the create items use for this server.
        tolerance_s: how old (or early) a signature's timestamp may be.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        signing_secret: Secrets | None = None,
        public_url: str | None = None,
        tolerance_s: float = TOLERANCE_S,
    ) -> None:
        if token == "":
            raise ValueError("an empty token would accept anyone: pass None for no token")
        self.token = token
        self.signing_secret = signing_secret
        self.public_url = public_url.rstrip("/") if public_url else None
        self.tolerance_s = tolerance_s

    def endpoint_url(self, dial: Dial) -> str:
        """The endpoint URL the dial's create item must have named."""
        if self.public_url is not None:
            return self.public_url + dial.target
        host = header(dial.headers, "Host") or ""
        return f"{dial.scheme}://{host}{dial.root_path}{dial.target}"

    def check(self, dial: Dial, now: float) -> None:
        """Accepts the dial or says why not.

        Raises:
            SignatureError: a missing or wrong token, or a missing, wrong or stale signature.
        """
        if self.token is not None and not self._token_matches(dial):
            raise SignatureError("the dial carries no valid token")
        if self.signing_secret is not None:
            verify_dial(
                self.signing_secret, dial.headers, self.endpoint_url(dial), now, self.tolerance_s
            )

    def _token_matches(self, dial: Dial) -> bool:
        assert self.token is not None
        wanted = self.token.encode()
        given = parse_qs(urlsplit(dial.target).query).get("token", [])
        authorization = header(dial.headers, "Authorization") or ""
        if authorization[:7].lower() == "bearer ":
            given.append(authorization[7:].strip())
        # Every candidate is compared, so timing tells nothing about which came close.
        return any([hmac.compare_digest(g.encode(), wanted) for g in given])

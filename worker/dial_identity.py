"""What every dial of one adapter carries to tell its endpoint who is calling (E6).

The creator's `headers`, `Sluice-Adapter-Id`, and, for an app with a signing secret,
`Sluice-Timestamp` and `Sluice-Signature`, recomputed at each dial (reconnects and
resumes included). By the compatibility rule an adapter created with Cloudflare's fields
only, for an app without a signing secret, is dialled exactly as before: no header is
added unless the creator gave `headers` or the operator configured signing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sluice.config import Settings
from sluice.errors import ErrorCode
from sluice.signing import ADAPTER_ID_HEADER, Headers, signed_dial_headers
from sluice.state.records import AdapterRecord
from sluice.state.sealed_headers import SealError, header_seal
from sluice.state.store import AdapterStore
from worker.dial import DialError


@dataclass(frozen=True, slots=True)
class DialIdentity:
    """The headers of one adapter's dials; values never in its repr (it may be logged)."""

    adapter_id: str
    endpoint: str  # exactly as in the create item: what the signature covers
    announce: bool  # E6 in use: Sluice's own headers are sent
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    signing_secret: str | None = field(default=None, repr=False)

    def for_dial(self, now: float) -> Headers:
        """The headers of a dial made at `now` (unix seconds); empty for a plain adapter."""
        if not self.announce:
            return []
        out: Headers = [*self.headers.items(), (ADAPTER_ID_HEADER, self.adapter_id)]
        if self.signing_secret is not None:
            out += signed_dial_headers(self.signing_secret, self.adapter_id, self.endpoint, now)
        return out


async def load_identity(
    store: AdapterStore, record: AdapterRecord, settings: Settings
) -> tuple[DialIdentity, str | None]:
    """The adapter's dial identity, and its sealed header values (to restore a lost record).

    Raises:
        DialError: `internal_error` when the adapter has header values this worker cannot
            open (no SLUICE_SECRETS_KEY, another key than the API's, or the values gone):
            dialling without them would hand the endpoint a request it must refuse.
    """
    secret = settings.app_signing_secrets.get(record.app_id)
    names = record.options.get("headerNames")
    identity = DialIdentity(
        adapter_id=record.adapter_id,
        endpoint=record.endpoint,
        announce=names is not None or secret is not None,
        signing_secret=secret,
    )
    if not names:
        return identity, None
    token = await store.sealed_headers(record.adapter_id)
    seal = header_seal(settings.header_keys)
    if token is None or seal is None:
        why = "they are gone" if token is None else "this worker has no SLUICE_SECRETS_KEY"
        raise DialError(ErrorCode.INTERNAL_ERROR, f"cannot dial with the adapter's headers: {why}")
    try:
        headers = seal.open(record.adapter_id, token)
    except SealError as exc:
        raise DialError(
            ErrorCode.INTERNAL_ERROR, f"cannot dial with the adapter's headers: {exc}"
        ) from None
    return DialIdentity(
        adapter_id=identity.adapter_id,
        endpoint=identity.endpoint,
        announce=True,
        headers=headers,
        signing_secret=secret,
    ), token

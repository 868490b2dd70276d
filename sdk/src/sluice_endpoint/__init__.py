"""Write endpoints for Sluice's WebSocket adapter (and Cloudflare's): read what egress
sends, send to ingest, verify dials and webhooks, call the API. See README.md."""

from sluice_endpoint.client import (
    Adapter,
    AsyncSluiceClient,
    ClosedAdapter,
    CreatedAdapter,
    EgressItem,
    IngestItem,
    SessionDescription,
    SluiceClient,
    TrackRequest,
)
from sluice_endpoint.dials import Dial, DialCheck
from sluice_endpoint.egress import EgressStream
from sluice_endpoint.errors import (
    ApiError,
    DialRefused,
    FormatError,
    PacketDecodeError,
    SenderClosed,
    SignatureError,
    SluiceEndpointError,
)
from sluice_endpoint.events import Cleared, MarkReached
from sluice_endpoint.formats import CLOUDFLARE_JPEG, CLOUDFLARE_PCM, AudioFormat, VideoFormat
from sluice_endpoint.ingest import IngestSender, Mark
from sluice_endpoint.items import AudioFrame, Gap, JpegFrame, Start, Stop, StreamItem
from sluice_endpoint.packet import MAX_MESSAGE_BYTES, Packet, decode_packet, encode_packet
from sluice_endpoint.server import Endpoint, url_of
from sluice_endpoint.signatures import (
    sign_dial,
    sign_webhook,
    verify_dial,
    verify_webhook_signature,
)
from sluice_endpoint.sockets import AsgiSocket, MessageSocket, WebsocketsSocket
from sluice_endpoint.stream import StreamEnd
from sluice_endpoint.webhooks import WebhookEvent, WebhookInbox, read_webhook

__version__ = "0.1.0"

__all__ = [
    "CLOUDFLARE_JPEG",
    "CLOUDFLARE_PCM",
    "MAX_MESSAGE_BYTES",
    "Adapter",
    "ApiError",
    "AsgiSocket",
    "AsyncSluiceClient",
    "AudioFormat",
    "AudioFrame",
    "Cleared",
    "ClosedAdapter",
    "CreatedAdapter",
    "Dial",
    "DialCheck",
    "DialRefused",
    "EgressItem",
    "EgressStream",
    "Endpoint",
    "FormatError",
    "Gap",
    "IngestItem",
    "IngestSender",
    "JpegFrame",
    "Mark",
    "MarkReached",
    "MessageSocket",
    "Packet",
    "PacketDecodeError",
    "SenderClosed",
    "SessionDescription",
    "SignatureError",
    "SluiceClient",
    "SluiceEndpointError",
    "Start",
    "Stop",
    "StreamEnd",
    "StreamItem",
    "TrackRequest",
    "VideoFormat",
    "WebhookEvent",
    "WebhookInbox",
    "WebsocketsSocket",
    "__version__",
    "decode_packet",
    "encode_packet",
    "read_webhook",
    "sign_dial",
    "sign_webhook",
    "url_of",
    "verify_dial",
    "verify_webhook_signature",
]

"""The WebRTC media layer the SFU and the adapter pipelines share.

Encoded frames off a receiver without decoding (`aiortc_internals`, `frames`, `rtp`),
pre-encoded packets into a sender (`packet_track`), the codecs aiortc lacks
(`passthrough`), ICE settings (`ice`) and a client of a Calls-compatible sessions API
(`calls_client`). Nothing here imports `api`, `worker` or `sfu`.
"""

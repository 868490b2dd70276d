"""The embedded SFU: WebRTC sessions and tracks behind a Realtime-compatible API."""

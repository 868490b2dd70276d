"""Sluice: stream media between WebRTC tracks and WebSocket endpoints."""

__version__ = "0.1.0"

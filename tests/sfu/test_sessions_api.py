"""The sessions API contract against a real SFU process: shapes, errors, flows."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis
from aiortc import RTCPeerConnection, RTCSessionDescription

from sluice.errors import SessionNotFound, TrackNotFound
from sluice.media.calls_client import SessionsApiError, SessionsClient
from sluice.media.ice import rtc_configuration
from sluice.state import track_registry
from tests.sfu.conftest import LOOPBACK, Server
from tests.sfu.media import ColourTrack, ToneTrack

pytestmark = pytest.mark.timeout(60)


async def test_new_session_with_empty_json_body(http: httpx.AsyncClient) -> None:
    r = await http.post("/sessions/new", content=b"", headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"sessionId"}
    r = await http.post("/sessions/new")
    assert r.status_code == 201


async def test_auth_and_unknown_sessions(sfu: Server, http: httpx.AsyncClient) -> None:
    r = await http.post("/sessions/new", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.json()["errorCode"] == "unauthorized"
    async with httpx.AsyncClient() as raw:
        r = await raw.post(
            f"{sfu.url}/v1/apps/ghost/sessions/new", headers={"Authorization": "Bearer x"}
        )
    assert r.status_code == 404
    assert r.json()["errorCode"] == "not_found_app_error"

    r = await http.get("/sessions/0123456789abcdef")
    assert r.status_code == 404
    assert r.json() == {
        "errorCode": "not_found_session_error",
        "errorDescription": "session '0123456789abcdef' does not exist",
    }
    # Another app's session does not exist for this app.
    sid = (await http.post("/sessions/new")).json()["sessionId"]
    async with httpx.AsyncClient(
        base_url=sfu.app_url("app2"), headers={"Authorization": "Bearer secret2"}
    ) as other:
        r = await other.get(f"/sessions/{sid}")
        assert r.status_code == 404
        assert r.json()["errorCode"] == "not_found_session_error"
        r = await other.post(f"/sessions/{sid}/tracks/new", json={"autoDiscover": True})
        assert r.json()["errorCode"] == "not_found_session_error"


async def test_pull_of_missing_track_fails_only_that_item(client: SessionsClient) -> None:
    publisher = await client.new_peer()
    await publisher.publish([ToneTrack(300.0)], ["mic"])
    sub = await client.new_peer()
    body = {
        "tracks": [
            {"location": "remote", "sessionId": publisher.session_id, "trackName": "nope"},
            {"location": "remote", "sessionId": publisher.session_id, "trackName": "mic"},
            {"location": "remote", "sessionId": "feedface", "trackName": "mic"},
        ]
    }
    answer = await client.call("POST", f"/{sub.session_id}/tracks/new", body)
    first, second, third = answer["tracks"]
    assert first["errorCode"] == "not_found_track_error"
    assert first["trackName"] == "nope"
    assert "errorCode" not in second and second["trackName"] == "mic" and second["mid"]
    assert second["sessionId"] == publisher.session_id
    assert third["errorCode"] == "not_found_session_error"
    assert answer["requiresImmediateRenegotiation"] is True
    assert answer["sessionDescription"]["type"] == "offer"
    view = await sub.state()
    assert view["tracks"] == [
        {
            "location": "remote",
            "mid": second["mid"],
            "trackName": "mic",
            "status": "initializing",
            "sessionId": publisher.session_id,
            "kind": "audio",
        }
    ]


async def test_bad_input_is_refused_and_harmless(
    client: SessionsClient, http: httpx.AsyncClient
) -> None:
    peer = await client.new_peer()
    path = f"/sessions/{peer.session_id}"

    async def expect(method: str, url: str, body: object, status: int, code: str) -> None:
        r = await http.request(method, url, json=body)
        assert r.status_code == status, r.text
        assert r.json()["errorCode"] == code, r.text

    bad_first = {"sessionDescription": {"type": "offer", "sdp": "v=0\r\nm=audio 9 RTP 0\r\n"}}
    await expect("POST", "/sessions/new", bad_first, 400, "invalid_params")
    bad_sdp = {"sessionDescription": {"type": "offer", "sdp": "hello"}, "autoDiscover": True}
    await expect("POST", f"{path}/tracks/new", bad_sdp, 400, "invalid_params")
    garbled = {"type": "offer", "sdp": "v=0\r\nm=audio x\r\n"}
    await expect(
        "POST", f"{path}/tracks/new", {"sessionDescription": garbled}, 400, "invalid_params"
    )
    no_ice = {"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
              "a=rtpmap:111 opus/48000/2\r\na=sendonly\r\n"}  # fmt: skip
    await expect(
        "POST", f"{path}/tracks/new", {"sessionDescription": no_ice}, 400, "invalid_params"
    )
    answer = {"sessionDescription": {"type": "answer", "sdp": "v=0\r\n"}}
    await expect("PUT", f"{path}/renegotiate", answer, 400, "invalid_params")
    await expect("PUT", f"{path}/tracks/close", {"tracks": [{"mid": "7"}]}, 400, "invalid_params")
    await expect("POST", f"{path}/tracks/new", {}, 400, "invalid_params")
    too_many = {
        "tracks": [{"location": "local", "trackName": f"t{i}", "mid": str(i)} for i in range(65)]
    }
    await expect("POST", f"{path}/tracks/new", too_many, 406, "invalid_params")
    r = await http.post(
        f"{path}/tracks/new", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["errorCode"] == "decoding_error"

    # An offer naming a mid it does not have.
    pc = RTCPeerConnection(rtc_configuration(LOOPBACK))
    try:
        pc.addTransceiver(ToneTrack(200.0), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "sdp": pc.localDescription.sdp}
        body = {
            "sessionDescription": offer,
            "tracks": [{"location": "local", "mid": "9", "trackName": "x"}],
        }
        await expect("POST", f"{path}/tracks/new", body, 400, "invalid_params")
        # ... and the session still works after all that.
        body["tracks"][0]["mid"] = pc.getTransceivers()[0].mid
        answer = await client.call("POST", f"/{peer.session_id}/tracks/new", body)
        assert answer["tracks"][0]["trackName"] == "x"
        await pc.setRemoteDescription(RTCSessionDescription(**answer["sessionDescription"]))
        remote = await client.pull(peer.session_id, "x", kind="audio")
        await asyncio.wait_for(remote.recv(), timeout=10)
    finally:
        await pc.close()


async def test_autodiscover_offer_without_candidates(
    client: SessionsClient, redis_url: str
) -> None:
    """Like a browser that never trickles: the SFU learns the peer from its checks."""
    pc = RTCPeerConnection(rtc_configuration(LOOPBACK))
    try:
        pc.addTransceiver(ToneTrack(350.0), direction="sendrecv")
        pc.addTransceiver(ColourTrack((10, 120, 220)), direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = "".join(
            line + "\r\n"
            for line in pc.localDescription.sdp.splitlines()
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        assert "a=candidate" not in sdp
        session_id = (await client.call("POST", "/new"))["sessionId"]
        answer = await client.call(
            "POST",
            f"/{session_id}/tracks/new",
            {"sessionDescription": {"type": "offer", "sdp": sdp}, "autoDiscover": True},
        )
        assert answer["requiresImmediateRenegotiation"] is False
        tracks = answer["tracks"]
        assert [t["kind"] for t in tracks] == ["audio", "video"]
        assert all(t["sessionId"] == session_id and t["trackName"] and t["mid"] for t in tracks)
        await pc.setRemoteDescription(RTCSessionDescription(**answer["sessionDescription"]))

        # Published at answer time: the registry knows it before any media flowed.
        r = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            info = await track_registry.lookup_track(r, "app1", session_id, tracks[1]["trackName"])
            assert (info.kind, info.codec, info.status) == ("video", "VP8", "active")
            audio_info = await track_registry.lookup_track(
                r, "app1", session_id, tracks[0]["trackName"]
            )
            assert audio_info.codec == "opus"
            with pytest.raises(TrackNotFound):
                await track_registry.lookup_track(r, "app1", session_id, "nope")
            with pytest.raises(SessionNotFound):
                await track_registry.lookup_track(r, "app2", session_id, tracks[0]["trackName"])
        finally:
            await r.aclose()

        video = await client.pull(session_id, tracks[1]["trackName"], kind="video")
        audio = await client.pull(session_id, tracks[0]["trackName"])
        await asyncio.wait_for(video.recv(), timeout=10)
        await asyncio.wait_for(audio.recv(), timeout=10)
        view = await client.call("GET", f"/{session_id}")
        assert [t["status"] for t in view["tracks"]] == ["active", "active"]
    finally:
        await pc.close()


async def test_close_with_renegotiation_offer(client: SessionsClient) -> None:
    publisher = await client.new_peer()
    await publisher.publish([ToneTrack(500.0)], ["mic"])
    mid = publisher.pc.getTransceivers()[0].mid
    result = await publisher.close_tracks([mid], force=False)
    assert result["requiresImmediateRenegotiation"] is True
    offer = result["sessionDescription"]
    assert offer["type"] == "offer" and "a=inactive" in offer["sdp"]
    await publisher.pc.setRemoteDescription(RTCSessionDescription(**offer))
    await publisher.pc.setLocalDescription(await publisher.pc.createAnswer())
    local = publisher.pc.localDescription
    await client.call(
        "PUT",
        f"/{publisher.session_id}/renegotiate",
        {"sessionDescription": {"type": local.type, "sdp": local.sdp}},
    )
    with pytest.raises(SessionsApiError, match="not_found_track_error"):
        await client.pull(publisher.session_id, "mic", kind="audio")


async def test_first_offer_at_session_creation_then_named_by_mid(client: SessionsClient) -> None:
    """Cloudflare's older flow: offer with sessions/new, tracks named later without SDP."""
    pc = RTCPeerConnection(rtc_configuration(LOOPBACK))
    try:
        pc.addTransceiver(ToneTrack(620.0), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        created = await client.call(
            "POST",
            "/new",
            {"sessionDescription": {"type": "offer", "sdp": pc.localDescription.sdp}},
        )
        assert created["sessionDescription"]["type"] == "answer"
        await pc.setRemoteDescription(RTCSessionDescription(**created["sessionDescription"]))
        sid = created["sessionId"]
        assert (await client.call("GET", f"/{sid}"))["tracks"] == []
        mid = pc.getTransceivers()[0].mid
        named = await client.call(
            "POST",
            f"/{sid}/tracks/new",
            {"tracks": [{"location": "local", "mid": mid, "trackName": "late-name"}]},
        )
        assert named["requiresImmediateRenegotiation"] is False
        assert "sessionDescription" not in named
        assert named["tracks"][0]["trackName"] == "late-name"
        audio = await client.pull(sid, "late-name", kind="audio")
        await asyncio.wait_for(audio.recv(), timeout=10)
    finally:
        await pc.close()

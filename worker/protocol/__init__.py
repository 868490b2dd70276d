"""Pure protocol cores of the media pipelines: bytes and numbers in, results out.

Nothing here touches a socket, an event loop, Redis or the clock: time is passed in as
monotonic seconds (`loop.time()` in the I/O layer). One concern per module:

- `packet`: the wire `Packet` (encode, decode, size limit).
- `pcm`: the PCM format, cutting a byte stream into 20 ms frames, stereo conversion.
- `audio_format`: egress audio in the endpoint's format (mono mix, resampling, μ-law,
  Packets of `frameMs`, timestamps at the output rate).
- `g711`: G.711 μ-law encoding and decoding by table.
- `playout`: the bounded real-time playout buffer of ingest.
- `pacing`: one tick every 20 ms without drift.
- `reconnect`: egress backoff, reconnect window and bounded drop-oldest backlogs.
- `egress_session`: one egress adapter's send queue, in-flight message and reconnect
  window as one state machine (what to send, when to re-dial, why it ended), and its
  stream events (`start`, `gap`, `stop`).
- `stamping`: egress `sequenceNumber` / `timestamp` from RTP timestamps.
"""

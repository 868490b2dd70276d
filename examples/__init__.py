"""Runnable examples of Sluice endpoints: `python -m examples.<name> --help`.

- `record`: writes egress audio to a WAV file and egress JPEGs to numbered files.
- `speak`: answers an ingest adapter with a WAV file, a tone or espeak-ng speech.
- `stt_ready`: turns egress audio into 16 kHz mono (what speech-to-text wants), with a meter.
- `demo`: a whole round trip on this machine (`make demo`).

`endpoint` and `audio` hold what they share.
"""

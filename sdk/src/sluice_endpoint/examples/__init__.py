"""Runnable endpoints built on the SDK, each one command against a Sluice (`make run`):

- `stt`: a speech-to-text bridge (egress, 16 kHz mono → PocketSphinx, offline).
- `tts`: a text-to-speech sender (lines on stdin or POST /say → espeak-ng → ingest).
- `echo_agent`: a voice agent's loop: hears, recognises, answers, stops when interrupted.
- `snapshots`: JPEG snapshots of a video track to a folder, with a hook for a model.

    pip install 'sluice-endpoint[examples]'     # PocketSphinx and its en-us model
    python -m sluice_endpoint.examples.stt --help

Each serves its endpoint, creates its adapter through the API and closes it on Ctrl+C.
`speech` (recognisers, utterances) and `espeak` (streamed synthesis) are theirs to share.
"""

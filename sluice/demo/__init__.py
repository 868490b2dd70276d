"""The development-mode demo: its page, built-in viewer endpoint and speaking voice.

Mounted by the process wiring (`sluice.cli.apps`) only with `SLUICE_DEV=1`.
"""

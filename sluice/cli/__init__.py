"""The process wiring on top of every layer: the `sluice` command, the dev server, admin.

Only this package may import `api`, `worker` and `sfu` together.
"""

"""The state model in Redis that every process shares.

Adapter records and their enums (`records`), every key and channel name (`keys`), the
transitions as Lua scripts (`store`, `lua/`), the SFU's published tracks
(`track_registry`), pub/sub events (`events`), create jobs (`jobs`), usage and the
loop-lag histogram. Nothing here imports `api`, `worker` or `sfu`.
"""

"""The control plane: validates requests, writes adapter state, hands work to workers."""

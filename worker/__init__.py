"""Worker hosts: a pool of processes, each running one adapter's pipeline at a time."""

"""File I/O: adapters, checkpoints (streamed shards), atomic output directories."""

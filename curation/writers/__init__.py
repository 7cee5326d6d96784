"""Writing documents to shards on disk (and reading them back)."""

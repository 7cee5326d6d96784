"""Near-duplicate removal: MinHash signatures, LSH buckets, connected components, survivors, and the stage that applies them."""

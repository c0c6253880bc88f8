"""Photos into the database: the streaming indexer (pipeline: scan, read, decode, detect,
align, embed, store, in batches that are each one transaction), the analysis of one photo
that local threads and Ray's workers both run, indexing on a Ray cluster (distributed), and
a watched archive's file system events turned into rounds of changes (watch)."""

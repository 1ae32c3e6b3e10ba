"""Jobs that compose the core: ingest (and later reindex, finetune, migrate, eval)."""

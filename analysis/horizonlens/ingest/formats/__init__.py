"""One module per source format; `horizonlens.ingest.registry` lists them by priority."""

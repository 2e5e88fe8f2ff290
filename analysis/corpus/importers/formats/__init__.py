"""One module per source format; `horizonlens.corpus.importers.registry` lists them by priority."""

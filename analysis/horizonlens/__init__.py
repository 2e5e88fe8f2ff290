"""Horizon Lens: long-horizon agent trajectories, replayed through MoE checkpoints, measured for compounding.

The package reads bottom-up as its architecture; each room imports only the rooms below it (import-linter
checks the order, `make check`):

    storage  datasets and manifests, transactions, local or S3 locations, locks, scans
    corpus   the corpus contract: schema, files, what a step's text is
    derived  aggregates and the search index, rebuilt from the corpus
    labels   annotations, versioned
    replays  the replay cache, the routing codec, compaction
    query    the store's views, filters, search, the SQL console
    ingest   importers of agent logs, one module per source format; app uploads
    model    checkpoints: loading, rendering to tokens, router capture, replay, engines
    metrics  error compounding, attribution, model-side signals, routing statistics
    figures  Plotly figure builders (tables in, figures out) and value formatting
    sample   the simulated sample corpus and the bundled sample checkpoint
    bench    benchmarks, each figure beside a baseline measured in the same run
    cli      the `horizonlens` command, one module per command group
    app      the Streamlit pages (horizonlens.app, in the app/ folder)

Only the app imports streamlit; torch and transformers are imported by the model layer, lazily.
"""

from horizonlens.errors import HorizonLensError

__version__ = "0.2.0"
__all__ = ["HorizonLensError", "__version__"]

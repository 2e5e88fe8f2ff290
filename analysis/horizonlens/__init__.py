"""Horizon Lens: long-horizon agent trajectories, replayed through MoE checkpoints, measured for compounding.

Browse trajectories, replay them through a local MoE checkpoint, and measure whether errors compound
along the horizon.

The package reads top-down as its architecture; each layer imports only the layers below it (checked by
import-linter in CI):

    corpus   the corpus contract: Parquet layout and schemas, the DuckDB store, the SQL gate, search
             indexes, the replay-cache layout, what a step's text is, importers of agent logs
    model    checkpoints: loading, rendering trajectories to tokens, router capture, replay and its cache
    metrics  error compounding, attribution, model-side signals, expert-routing statistics
    figures  Plotly figure builders (tables in, figures out)
    sample   the simulated sample corpus and the bundled sample checkpoint
    bench    benchmarks, each figure beside a baseline measured in the same run
    cli      the `horizonlens` command
    app      the Streamlit app (horizonlens.app, in the app/ folder)

Nothing here imports streamlit, and torch is imported only inside the model layer's functions.
"""

from horizonlens.errors import HorizonLensError

__version__ = "0.2.0"
__all__ = ["HorizonLensError", "__version__"]

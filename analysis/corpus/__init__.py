"""The corpus contract and its DuckDB store."""

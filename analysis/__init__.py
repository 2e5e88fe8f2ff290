"""Horizon Lens core: corpus store, model replay, metrics and figures. Never imports streamlit."""

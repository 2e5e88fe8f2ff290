"""Metrics over the corpus and replay results: error compounding and expert-routing statistics."""

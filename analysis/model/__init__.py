"""The model part: checkpoint loading, rendering, router capture, replay and its cache (torch imported lazily)."""

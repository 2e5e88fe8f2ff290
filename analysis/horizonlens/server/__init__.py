"""The team server: who may sign in, which Host names and corpora it serves, and its configuration."""

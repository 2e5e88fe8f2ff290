"""The sample corpus generator: simulated agents in simulated worlds."""

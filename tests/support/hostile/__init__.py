"""Hostile input files, built at test time (no large file is committed): see cases.py."""

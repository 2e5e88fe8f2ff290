"""`python -m horizonlens.cli` runs the command line."""

from horizonlens.cli.main import main

main()

"""anbu kernel: settings, domain types, database, clock, command line and composition root."""

__version__ = "0.1.0"

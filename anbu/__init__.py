"""anbu, the program: the command line, the services (ingest, worker, web), the demo and the
benches. The composition root: it imports every package and no package imports it."""

__version__ = "0.1.0"

"""`python -m anbu.cli`."""

from anbu.cli import main

main()

"""The kernel every package imports: settings, domain types, database and migrations, clock.

It imports no other package of anbu's.
"""

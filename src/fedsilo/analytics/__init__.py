"""Federated analytics: privacy-preserving aggregate queries across organizations.

See docs/analytics.md. Entry points: :func:`fedsilo.analytics.run.run_query` and the
``fedsilo query`` command.
"""

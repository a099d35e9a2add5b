"""Hetero (vertical) logistic regression over homomorphic encryption; see docs/vertical.md."""

from fedsilo.vertical.hetero_lr.arbiter import HeteroLrArbiter, LrOutcome, LrParams
from fedsilo.vertical.hetero_lr.party import HeteroLrParty

__all__ = ["HeteroLrArbiter", "HeteroLrParty", "LrOutcome", "LrParams"]

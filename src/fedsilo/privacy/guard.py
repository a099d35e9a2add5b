"""The party's privacy guard: its DP-SGD mechanism, its ledger, its budget and its audit log.

Everything here runs at the party, so a party process enforces its own budget whatever the
coordinator asks:

* at setup the coordinator proposes record-level DP (noise multiplier, or a target epsilon
  that the party turns into its own noise for its own rows and the planned rounds);
* the party draws its DP noise and sampling from a CSPRNG (:mod:`fedsilo.privacy.noise`); a
  setup asking for reproducible (seeded) noise is refused unless the party's *own* settings
  allow it, which only a simulation's do (:attr:`PartyPrivacy.allow_reproducible_noise`);
* before every fit the guard projects the party's epsilon after this round, over every spend
  in its ledger plus this round's, and refuses the round with
  :class:`~fedsilo.errors.BudgetExhaustedError` if it would exceed ``max_epsilon``;
* every reply that leaves the party goes through :meth:`PrivacyGuard.record_sent`, which
  appends it to the hash-chained audit log; fit replies carry their spend, so the log is also
  the ledger a restarted party reads back (it refuses to start on a broken chain).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.errors import BudgetExhaustedError, ConfigError, ProtocolError
from fedsilo.privacy.accounting import AccountingMethod, GaussianSpend, epsilon, noise_for_epsilon
from fedsilo.privacy.audit import AuditLog
from fedsilo.privacy.dp_sgd import DPSGDConfig, round_spend, sample_rate, steps_per_round
from fedsilo.privacy.noise import NoiseSource
from fedsilo.protocol.messages import Message
from fedsilo.training.local import LocalTrainConfig


@dataclass(frozen=True)
class PartyPrivacy:
    """A party's own privacy settings (its config, not the coordinator's)."""

    max_epsilon: float | None = None
    audit_log: Path | None = None
    clock: Callable[[], float] = time.time
    # Simulation only (``[privacy] reproducible_noise``): accept DP noise seeded from the fit
    # seed. A deployed party's config has no such key, so it refuses such a setup.
    allow_reproducible_noise: bool = False


@dataclass(frozen=True)
class RecordDPPlan:
    """Record-level DP as agreed at setup, with the party's own noise multiplier."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float
    method: AccountingMethod
    target_epsilon: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "delta": self.delta,
            "accounting": self.method.value,
            "target_epsilon": self.target_epsilon,
        }


def plan_record_dp(proposal: dict[str, Any], rows: int, party: str) -> RecordDPPlan:
    """Turn the coordinator's proposal into this party's mechanism (noise from a target)."""
    try:
        delta = float(proposal["delta"])
        method = AccountingMethod(proposal["accounting"])
        max_grad_norm = float(proposal["max_grad_norm"])
        target = proposal.get("target_epsilon")
        noise = proposal.get("noise_multiplier")
        if target is not None:
            batch, epochs = int(proposal["batch_size"]), int(proposal["epochs"])
            steps = int(proposal["rounds"]) * steps_per_round(batch, rows, epochs)
            noise = noise_for_epsilon(
                float(target), delta, sample_rate(batch, rows), steps, method, tolerance=1e-4
            )
        if noise is None:
            raise KeyError("noise_multiplier")
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"party '{party}': record_dp setup lacks a valid {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"party '{party}' ({rows} training rows): {exc}") from None
    return RecordDPPlan(
        float(noise), max_grad_norm, delta, method, None if target is None else float(target)
    )


@dataclass
class PrivacyGuard:
    """Per-party ledger, budget check and audit recorder (see the module docstring)."""

    party: str
    settings: PartyPrivacy = field(default_factory=PartyPrivacy)
    plan: RecordDPPlan | None = field(default=None, init=False)
    reproducible_noise: bool = field(default=False, init=False)
    spends: list[GaussianSpend] = field(default_factory=list, init=False)
    _rows: int = field(default=0, init=False)
    _log: AuditLog | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.settings.audit_log is not None:
            self._log = AuditLog(self.settings.audit_log, clock=self.settings.clock)
            for entry in self._log.entries():  # the log is the ledger: spend survives restarts
                spend = (entry.get("dp") or {}).get("round_spend")
                if spend is not None:
                    self.spends.append(
                        GaussianSpend(
                            float(spend["noise_multiplier"]),
                            float(spend["sample_rate"]),
                            int(spend["steps"]),
                        )
                    )

    # -- setup ----------------------------------------------------------------------------
    def configure(
        self, proposal: dict[str, Any] | None, rows: int, *, reproducible_noise: bool = False
    ) -> dict[str, Any] | None:
        """Adopt (or clear) record-level DP for this job; returns the plan for the reply.

        ``reproducible_noise`` (the coordinator's request) is refused unless this party's own
        settings allow it: the coordinator knows the fit seeds, so seeded noise would let it
        subtract the noise.
        """
        if reproducible_noise and not self.settings.allow_reproducible_noise:
            raise ConfigError(
                f"party '{self.party}' refuses the job: it asks for reproducible DP noise "
                "(privacy.reproducible_noise), which is seeded from values the coordinator "
                "knows and would let it remove the noise. It is a simulation-only setting; "
                "remove it from the job to run with real parties"
            )
        self.reproducible_noise = reproducible_noise
        self._rows = rows
        self.plan = None if proposal is None else plan_record_dp(proposal, rows, self.party)
        return None if self.plan is None else self.plan.to_json()

    def epsilon(self, extra: list[GaussianSpend] | None = None) -> float:
        assert self.plan is not None
        return epsilon([*self.spends, *(extra or [])], self.plan.delta, self.plan.method)

    def noise_source(self, fit_seed: int, purpose: str) -> NoiseSource:
        """Where this fit's DP sampling and noise come from: the CSPRNG, unless the job is a
        simulation that asked for (and this party's settings allow) reproducible noise."""
        return NoiseSource.for_mechanism(fit_seed if self.reproducible_noise else None, purpose)

    # -- fit --------------------------------------------------------------------------------
    def before_fit(self, rnd: int, cfg: LocalTrainConfig) -> DPSGDConfig | None:
        """The mechanism for this round, or a refusal if it would exceed the party's budget."""
        if self.plan is None:
            return None
        budget = self.settings.max_epsilon
        if budget is not None:
            spend = round_spend(self.plan.noise_multiplier, cfg.batch_size, self._rows, cfg.epochs)
            projected = self.epsilon([spend])
            if projected > budget:
                raise BudgetExhaustedError(
                    f"party '{self.party}' refuses round {rnd}: its privacy budget is epsilon "
                    f"{budget:g} (delta {self.plan.delta:g}) and this round would bring its "
                    f"spend from {self.epsilon():.4f} to {projected:.4f}. Raise the party's "
                    "max_epsilon, run fewer rounds, or add more noise"
                )
        return DPSGDConfig(self.plan.noise_multiplier, self.plan.max_grad_norm)

    def after_fit(self, cfg: LocalTrainConfig) -> dict[str, Any]:
        """Commit this round's spend to the ledger; the ``privacy`` body of the fit reply."""
        assert self.plan is not None
        spend = round_spend(self.plan.noise_multiplier, cfg.batch_size, self._rows, cfg.epochs)
        self.spends.append(spend)
        return {
            "level": "record",
            "epsilon": self.epsilon(),
            "delta": self.plan.delta,
            "accounting": self.plan.method.value,
            "noise_multiplier": spend.noise_multiplier,
            "max_grad_norm": self.plan.max_grad_norm,
            "sample_rate": spend.sample_rate,
            "steps": sum(s.steps for s in self.spends),
            "round_spend": {
                "noise_multiplier": spend.noise_multiplier,
                "sample_rate": spend.sample_rate,
                "steps": spend.steps,
            },
            "max_epsilon": self.settings.max_epsilon,
        }

    # -- audit ------------------------------------------------------------------------------
    def record_sent(self, reply: bytes) -> None:
        """Append what is about to leave the party to its audit log (no-op without a log)."""
        if self._log is None:
            return
        record: dict[str, Any] = {
            "party": self.party,
            "bytes": len(reply),
            "sha256": hashlib.sha256(reply).hexdigest(),
        }
        try:
            msg = Message.decode(reply)
            record.update(job=msg.job_id, round=msg.round, kind=msg.kind.value)
            if msg.error_code is not None:
                record["error_code"] = msg.error_code.value
            privacy = msg.body.get("privacy")
        except ProtocolError:
            record.update(job="", round=-1, kind="undecodable")
            privacy = None
        if isinstance(privacy, dict):
            record["dp"] = {
                k: privacy.get(k)
                for k in (
                    "epsilon",
                    "delta",
                    "noise_multiplier",
                    "max_grad_norm",
                    "sample_rate",
                    "round_spend",
                )
            }
        self._log.append(record)

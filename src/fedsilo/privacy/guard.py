"""The party's privacy guard: its DP mechanisms, its one ledger, its budget, its audit log.

Everything here runs at the party, so a party process enforces its own budget whatever the
coordinator asks:

* at setup the coordinator proposes record-level DP (noise multiplier, or a target epsilon
  that the party turns into its own noise for its own rows and the planned rounds);
* a client-DP task's clip norm and noise share are checked against the party's own
  :class:`~fedsilo.privacy.dp_fedavg.ClientDPPolicy` before it trains;
* the party draws its DP noise and sampling from a CSPRNG (:mod:`fedsilo.privacy.noise`); a
  setup asking for reproducible (seeded) noise is refused unless the party's *own* settings
  allow it, which only a simulation's do (:attr:`PartyPrivacy.allow_reproducible_noise`);
* every noisy release (a DP-SGD round before it trains, an analytics answer before its
  statistics leave) is checked against the party's budget and recorded in its
  :class:`~fedsilo.privacy.ledger.PrivacyLedger` in one transaction, and refused with
  :class:`~fedsilo.errors.BudgetExhaustedError` if the party's total epsilon over *all* its
  releases, every job and every query, would pass ``max_epsilon``;
* every reply that leaves the party goes through :meth:`PrivacyGuard.seal` (the ``on_reply``
  of the party's :func:`~fedsilo.protocol.serve.serve`): it is appended to the hash-chained
  log, the party signs the new head, keeps that anchor in its ledger and sends it with the
  reply, so the coordinator holds an anchor of every entry. A party refuses to start on a log
  that is broken or disagrees with its anchors.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedsilo.errors import AuditError, ConfigError, ProtocolError
from fedsilo.privacy.accounting import (
    AccountingMethod,
    GaussianSpend,
    epsilon,
    noise_for_epsilon,
)
from fedsilo.privacy.audit import Anchor, AuditLog, verify
from fedsilo.privacy.dp_fedavg import ClientDPPolicy
from fedsilo.privacy.dp_sgd import DPSGDConfig, round_spend, sample_rate, steps_per_round
from fedsilo.privacy.ledger import Budget, Charged, Event, PrivacyLedger
from fedsilo.privacy.noise import NoiseSource
from fedsilo.privacy.secagg import keys
from fedsilo.protocol.messages import Message, with_anchor
from fedsilo.training.local import LocalTrainConfig


@dataclass(frozen=True)
class PartyPrivacy:
    """A party's own privacy settings (its config, not the coordinator's).

    ``delta`` and ``accounting`` are the party's own; ``None`` (simulation only, where the job
    file stands in for each party's config) takes the job's. ``ledger`` None keeps the ledger
    in memory (a simulated party lives for one run). ``signing_key`` is the party's long-term
    Ed25519 identity key (deployment: ``[secure_aggregation] identity_key``), which signs its
    audit-log anchors and which its ledger is kept under; None makes a key for this process.
    """

    max_epsilon: float | None = None
    delta: float | None = None
    accounting: AccountingMethod | None = None
    ledger: Path | None = None
    audit_log: Path | None = None
    signing_key: Ed25519PrivateKey | None = field(default=None, repr=False)
    clock: Callable[[], float] = time.time
    # Simulation only (``[privacy] reproducible_noise``): accept DP noise seeded from the fit
    # seed. A deployed party's config has no such key, so it refuses such a setup.
    allow_reproducible_noise: bool = False
    # The clip norms and noise shares it accepts in client-DP rounds (``[privacy.client_dp]``).
    client_dp: ClientDPPolicy = field(default_factory=ClientDPPolicy)


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


class PrivacyGuard:
    """Per-party ledger, budget checks and audit sealing (see the module docstring)."""

    def __init__(self, party: str, settings: PartyPrivacy | None = None) -> None:
        self.party = party
        self.settings = settings or PartyPrivacy()
        given = self.settings.signing_key
        self.signing_key = given if given is not None else keys.new_identity_key()
        self.ledger = PrivacyLedger(
            self.settings.ledger,
            party,
            identity=None if given is None else keys.identity_public(given).hex(),
            clock=self.settings.clock,
        )
        self.plan: RecordDPPlan | None = None
        self.reproducible_noise = False
        self._rows = 0
        self._job = ""
        self._round_spend: GaussianSpend | None = None
        self._ledger_after = 0.0
        self._log: AuditLog | None = None
        self._anchor: Anchor | None = None
        if self.settings.audit_log is not None:
            self._open_log(self.settings.audit_log)

    def _open_log(self, path: Path) -> None:
        """Open the log, refusing one that is broken or disagrees with the party's anchors."""
        anchors = [Anchor.from_json(a) for a in self.ledger.anchors()]
        result = verify(path, anchors) if anchors or path.exists() else None
        if result is not None and not result.ok:
            fix = (
                "Restore it from a backup (or set audit_log to where it was moved); the party "
                "will not start without it"
                if result.missing
                else "Restore it from a backup; the party will not start on a tampered log"
            )
            raise AuditError(f"party '{self.party}': {result.problem(path)}. {fix}")
        self._log = AuditLog(path, clock=self.settings.clock)
        self._anchor = self._sign_head()

    # -- the ledger -------------------------------------------------------------------------
    def budget(self, delta: float, method: AccountingMethod) -> Budget:
        """The party's budget; its own delta and accountant, else (simulation) the job's."""
        s = self.settings
        return Budget(s.max_epsilon, s.delta or delta, s.accounting or method)

    @property
    def spends(self) -> list[Event]:
        """This job's releases in the ledger (the job set at setup)."""
        return self.ledger.spends(job=self._job)

    def epsilon(self, extra: list[GaussianSpend] | None = None) -> float:
        """This job's epsilon (plus ``extra``) at the job's delta: what the job reports."""
        assert self.plan is not None
        return epsilon([*self.spends, *(extra or [])], self.plan.delta, self.plan.method)

    # -- setup ----------------------------------------------------------------------------
    def configure(
        self,
        proposal: dict[str, Any] | None,
        rows: int,
        *,
        job: str = "",
        reproducible_noise: bool = False,
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
        self._job = job
        self.plan = None if proposal is None else plan_record_dp(proposal, rows, self.party)
        return None if self.plan is None else self.plan.to_json()

    def noise_source(self, fit_seed: int, purpose: str) -> NoiseSource:
        """Where this fit's DP sampling and noise come from: the CSPRNG, unless the job is a
        simulation that asked for (and this party's settings allow) reproducible noise."""
        return NoiseSource.for_mechanism(fit_seed if self.reproducible_noise else None, purpose)

    # -- fit --------------------------------------------------------------------------------
    def before_fit(self, rnd: int, cfg: LocalTrainConfig) -> DPSGDConfig | None:
        """Charge this round to the ledger and return its mechanism, or refuse the round.

        The round is charged *before* training (check and charge in one transaction), so a
        round that then fails is still counted: the conservative choice.
        """
        if self.plan is None:
            return None
        plan = self.plan
        spend = round_spend(plan.noise_multiplier, cfg.batch_size, self._rows, cfg.epochs)
        budget = self.budget(plan.delta, plan.method)

        def refuse(before: float, after: float) -> str:
            return (
                f"party '{self.party}' refuses round {rnd}: its privacy budget is epsilon "
                f"{budget.max_epsilon:g} (delta {budget.delta:g}) and this round would bring "
                f"its spend from {before:.4f} to {after:.4f}. Raise the party's max_epsilon, "
                "run fewer rounds, or add more noise"
            )

        charged = self.ledger.charge(
            spend,
            budget,
            source="training",
            job=self._job,
            round=rnd,
            what=f"round {rnd}",
            refuse=refuse,
        )
        self._round_spend, self._ledger_after = spend, charged.after
        return DPSGDConfig(plan.noise_multiplier, plan.max_grad_norm)

    def after_fit(self, cfg: LocalTrainConfig) -> dict[str, Any]:
        """The ``privacy`` body of the fit reply: this job's spend and the party's total."""
        assert self.plan is not None and self._round_spend is not None
        spend = self._round_spend
        budget = self.budget(self.plan.delta, self.plan.method)
        entries = self.ledger.entries()
        job_spends = [e.spend for e in entries if e.job == self._job]
        same = len(job_spends) == len(entries) and (budget.delta, budget.method) == (
            self.plan.delta,
            self.plan.method,
        )
        job_epsilon = (
            self._ledger_after  # the ledger holds only this job: its total is the job's
            if same
            else epsilon(job_spends, self.plan.delta, self.plan.method)
        )
        return {
            "level": "record",
            "epsilon": job_epsilon,
            "delta": self.plan.delta,
            "accounting": self.plan.method.value,
            "noise_multiplier": spend.noise_multiplier,
            "max_grad_norm": self.plan.max_grad_norm,
            "sample_rate": spend.sample_rate,
            "steps": sum(s.steps for s in job_spends),
            "round_spend": {
                "noise_multiplier": spend.noise_multiplier,
                "sample_rate": spend.sample_rate,
                "steps": spend.steps,
            },
            "max_epsilon": self.settings.max_epsilon,
            "ledger_epsilon": self._ledger_after,
            "ledger_delta": budget.delta,
        }

    # -- queries ----------------------------------------------------------------------------
    def query_cost(self, spend: Event, delta: float, method: AccountingMethod) -> float:
        """One query's epsilon on its own, at the party's delta (Laplace: its pure epsilon)."""
        return epsilon([spend], self.budget(delta, method).delta, self.budget(delta, method).method)

    def check_query(self, spend: Event, delta: float, method: AccountingMethod) -> None:
        """Refuse early (nothing recorded) a query the budget cannot afford now."""
        self.ledger.check(
            spend, self.budget(delta, method), self._query_refusal(spend, delta, method)
        )

    def charge_query(
        self, spend: Event, delta: float, method: AccountingMethod, *, job: str, what: str
    ) -> dict[str, Any]:
        """Check and charge one answer (one transaction); the ``privacy`` body of the reply."""
        budget = self.budget(delta, method)
        charged: Charged = self.ledger.charge(
            spend,
            budget,
            source="query",
            job=job,
            round=0,
            what=what,
            refuse=self._query_refusal(spend, delta, method),
        )
        return {
            "spent": charged.after,
            "budget": self.settings.max_epsilon,
            "delta": budget.delta,
            "cost": self.query_cost(spend, delta, method),
        }

    def _query_refusal(
        self, spend: Event, delta: float, method: AccountingMethod
    ) -> Callable[[float, float], str]:
        budget = self.budget(delta, method)
        cost = self.query_cost(spend, delta, method)

        def refuse(before: float, after: float) -> str:
            return (
                f"query refused: party '{self.party}' has a budget of epsilon "
                f"{budget.max_epsilon:g}, has spent {before:.4g}, and this query costs "
                f"{cost:.4g} (total {after:.4g} at delta {budget.delta:g}); lower the query's "
                "epsilon, or the party raises its max_epsilon"
            )

        return refuse

    # -- audit ------------------------------------------------------------------------------
    def _sign_head(self) -> Anchor:
        assert self._log is not None
        entries, head = self._log.head
        return Anchor.sign(self.party, entries, head, self.signing_key, self.settings.clock())

    def seal(self, reply: bytes) -> bytes:
        """The reply as it leaves: logged, then carrying the signed anchor of the log with it.

        The log entry is of the reply as the party computed it (the anchor cannot hash
        itself), so the anchor that leaves with a reply covers that reply's own entry: the
        coordinator's copy of the newest anchor covers the whole log, and cutting even the
        last line shows against it. Without an audit log the reply leaves unchanged.
        """
        if self._log is None or self._anchor is None:
            return reply
        self._log.append(self._record(reply))
        self._anchor = self._sign_head()
        self.ledger.save_anchor(self._anchor.entries, self._anchor.to_json())
        return with_anchor(reply, self._anchor.to_json())

    def _record(self, reply: bytes) -> dict[str, Any]:
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
                k: privacy[k]
                for k in (
                    "epsilon",
                    "delta",
                    "noise_multiplier",
                    "max_grad_norm",
                    "sample_rate",
                    "round_spend",
                    "spent",
                    "cost",
                )
                if k in privacy
            }
        return record

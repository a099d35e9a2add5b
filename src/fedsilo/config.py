"""Job configuration: TOML in, validated pydantic models out.

A job file names where the data is, the model, local training, aggregation and party
selection. Every key is checked: an unknown or misspelled key, a value of the wrong type or
out of range raises :class:`~fedsilo.errors.ConfigError` naming the key and the fix, e.g.::

    ConfigError: examples/job.toml: key 'training.lr' is not a known key.
    Did you mean 'training.learning_rate'?

Data comes from one of three places (exactly one per job):

* ``data.dataset``: a built-in dataset (``fedsilo datasets``) partitioned across
  ``data.num_parties`` simulated parties with ``data.partition``;
* ``data.path``: one CSV/Parquet file partitioned the same way (simulation);
* ``[[parties]]`` each with its own ``path``: one file per organization.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from fedsilo.aggregation import (
    AggregatorKind,
    AggregatorSpec,
    ServerOptimizerKind,
    ServerOptimizerSpec,
)
from fedsilo.config_base import Strict
from fedsilo.data.partition import PartitionKind
from fedsilo.data.tabular import ColumnDeclaration, MissingPolicy
from fedsilo.jobs import resolve
from fedsilo.privacy.accounting import AccountingMethod
from fedsilo.privacy.dp_fedavg import ClientDPNoise as ClientDPNoise  # the TOML enum
from fedsilo.tracking import TrackingConfig


class LocalOptimizer(enum.Enum):
    SGD = "sgd"
    ADAM = "adam"


class PartyConfig(Strict):
    """One organization and its data file (no ``path``: its rows come as a DataFrame,
    ``fedsilo.simulate(job, data={name: df})``; a party with neither fails at load time)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    path: Path | None = None


class DataConfig(Strict):
    """Where the rows live and how they are split and prepared."""

    dataset: str | None = None
    path: Path | None = None
    num_parties: int = Field(default=3, ge=1, le=10_000)
    partition: PartitionKind = PartitionKind.IID
    alpha: float = Field(default=0.5, gt=0)
    column: str | None = None
    min_partition_size: int = Field(default=10, ge=1)
    label: str | None = None
    id: str | None = None
    columns: dict[str, ColumnDeclaration] = Field(default_factory=dict)
    missing: MissingPolicy = MissingPolicy.REJECT
    test_path: Path | None = None
    test_fraction: float = Field(default=0.2, ge=0, lt=1)
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)


class ModelConfig(Strict):
    """A model from the zoo by name, or ``package.module:factory``."""

    name: str = "logreg"
    hidden: list[int] = Field(default_factory=lambda: [128])
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _hidden_positive(self) -> ModelConfig:
        if any(h <= 0 for h in self.hidden):
            raise ValueError("hidden sizes must be positive integers, e.g. hidden = [128]")
        return self


class TrainingConfig(Strict):
    """Local training at each party, every round."""

    epochs: int = Field(default=1, ge=1, le=1000)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    optimizer: LocalOptimizer = LocalOptimizer.SGD
    momentum: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    proximal_mu: float = Field(default=0.0, ge=0)


class AggregationConfig(Strict):
    """How updates are combined (aggregator) and applied (server optimizer)."""

    aggregator: AggregatorKind = AggregatorKind.MEAN
    trim_ratio: float = Field(default=0.1, ge=0, lt=0.5)
    num_byzantine: int = Field(default=0, ge=0)
    num_selected: int | None = Field(default=None, ge=1)
    server_optimizer: ServerOptimizerKind = ServerOptimizerKind.SGD
    server_learning_rate: float = Field(default=1.0, gt=0)
    server_momentum: float = Field(default=0.9, ge=0, lt=1)
    beta_1: float = Field(default=0.9, ge=0, lt=1)
    beta_2: float = Field(default=0.99, ge=0, lt=1)
    tau: float = Field(default=1e-3, gt=0)

    def aggregator_spec(self) -> AggregatorSpec:
        return AggregatorSpec(
            kind=self.aggregator,
            trim_ratio=self.trim_ratio,
            num_byzantine=self.num_byzantine,
            num_selected=self.num_selected,
        )

    def server_optimizer_spec(self) -> ServerOptimizerSpec:
        return ServerOptimizerSpec(
            kind=self.server_optimizer,
            learning_rate=self.server_learning_rate,
            momentum=self.server_momentum,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            tau=self.tau,
        )


class SelectionConfig(Strict):
    """Which parties join a round and how long the coordinator waits."""

    fraction: float = Field(default=1.0, gt=0, le=1)
    min_parties: int = Field(default=1, ge=1)
    timeout_s: float = Field(default=600.0, gt=0)
    max_round_retries: int = Field(default=2, ge=0)

    def per_round(self, n: int) -> int:
        """How many of ``n`` parties a round selects: ``ceil(fraction * n)``, at least
        ``min_parties``, at most ``n``."""
        return min(n, max(self.min_parties, math.ceil(self.fraction * n)))


class EvaluationConfig(Strict):
    """When parties evaluate the global model on their own held-out rows.

    Every ``every`` rounds the round's sampled parties evaluate; the last round, every
    connected party (the final per-party table). A simulation's central test split is
    evaluated every round whatever this says; without one, the global metrics of a round
    come from its party evaluations, so rounds in between have none.
    """

    every: int = Field(default=1, ge=1, le=100_000)


class VectorizeMode(enum.Enum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


class SimulationConfig(Strict):
    """How ``fedsilo simulate`` runs the parties on this machine (ignored by a deployment).

    ``workers`` parties train at a time, each with one torch thread (default: the machine's
    cores); the model does not depend on it. ``vectorize`` trains many parties of a logreg or
    MLP job together as one batched computation (:mod:`fedsilo.training.vectorized`): "auto"
    from :data:`VECTORIZE_MIN_PARTIES` parties per round, "on" always, "off" never. Vectorized
    training equals one-by-one training to float tolerance, not bit for bit.
    """

    workers: int | None = Field(default=None, ge=1, le=1024)
    vectorize: VectorizeMode = VectorizeMode.AUTO


VECTORIZE_MIN_PARTIES = 8
VECTORIZABLE_MODELS = ("logreg", "mlp")


class SecAggVariant(enum.Enum):
    SECAGG = "secagg"  # Bonawitz et al. 2017: every pair of parties masks
    SECAGG_PLUS = "secagg+"  # Bell et al. 2020: each party masks with O(log n) neighbours


class SecureAggregationConfig(Strict):
    """Secure aggregation: the coordinator learns only the sum of the round's survivors.

    ``threshold`` is the fraction of each party's share group (its neighbours and itself)
    that must survive for the round to unmask, raised to the least every party accepts;
    ``neighbours`` (secagg+ only) defaults to the even number >= 3 log2(selected parties);
    the default or a configured value is raised to the least degree the parties' declared
    rates accept (a raised configured value is logged). ``dropout_rate`` and ``corruption_rate``
    are each party's own declaration (simulation: this job file stands in for every party's
    config; a deployed party reads its party.toml). Updates are clipped to ``[-clip_range,
    clip_range]`` per coordinate and quantized into the ring Z_{2^bits} (docs/privacy.md).
    """

    enabled: bool = False
    variant: SecAggVariant = SecAggVariant.SECAGG
    threshold: float = Field(default=0.5, gt=0, le=1)
    neighbours: int | None = Field(default=None, ge=2)
    clip_range: float = Field(default=4.0, gt=0)
    bits: int = Field(default=32, ge=16, le=48)
    dropout_rate: float = Field(default=0.2, ge=0, lt=1)
    corruption_rate: float = Field(default=0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _rates(self) -> SecureAggregationConfig:
        if self.dropout_rate + self.corruption_rate > 0.9:
            raise ValueError(
                "privacy.secure_aggregation: dropout_rate + corruption_rate must be at most 0.9 "
                "(no secure graph exists beyond that)"
            )
        return self


# ----------------------------------------------------------------- (keep the two apart for merges)


class RecordDPConfig(Strict):
    """Record-level DP-SGD inside every party (protects each party's individuals).

    Give exactly one of ``noise_multiplier`` or ``target_epsilon``; with a target, each party
    finds the noise for its own sample rate (batch size / its rows) and the planned rounds.
    """

    enabled: bool = False
    noise_multiplier: float | None = Field(default=None, gt=0, le=1e4)
    target_epsilon: float | None = Field(default=None, gt=0, le=1e4)
    max_grad_norm: float = Field(default=1.0, gt=0)
    accounting: AccountingMethod = AccountingMethod.RDP

    @model_validator(mode="after")
    def _noise_or_target(self) -> RecordDPConfig:
        if not self.enabled:
            return self
        given = [self.noise_multiplier is not None, self.target_epsilon is not None]
        if all(given):
            raise ValueError(
                "privacy.record_dp: give noise_multiplier or target_epsilon, not both "
                "(with a target each party finds its own noise multiplier)"
            )
        if not any(given):
            raise ValueError(
                "privacy.record_dp is enabled but sets neither noise_multiplier (e.g. 1.1) nor "
                "target_epsilon (e.g. 3.0); set one of them"
            )
        return self


class OnBudgetExhausted(enum.Enum):
    CONTINUE = "continue"
    STOP = "stop"


class BudgetConfig(Strict):
    """Each party's maximum epsilon; a party refuses a round that would exceed it."""

    max_epsilon: float | None = Field(default=None, gt=0)
    parties: dict[str, float] = Field(default_factory=dict)  # per-party overrides
    on_exhausted: OnBudgetExhausted = OnBudgetExhausted.CONTINUE

    @model_validator(mode="after")
    def _positive(self) -> BudgetConfig:
        bad = sorted(p for p, e in self.parties.items() if not (e > 0 and math.isfinite(e)))
        if bad:
            raise ValueError(
                f"privacy.budget.parties: max epsilon must be a positive number for {bad}"
            )
        return self

    def max_epsilon_for(self, party: str) -> float | None:
        return self.parties.get(party, self.max_epsilon)


# -----------------------------------------------------------------


class ClientDPConfig(Strict):
    """Client-level DP-FedAvg (protects whole parties; for federations of many parties).

    McMahan et al. 2018: each party clips its update to L2 norm ``clip_norm``; the mean over
    the round's selected parties gets Gaussian noise of std ``noise_multiplier * clip_norm``
    on the sum. ``adaptive_clipping`` moves the clip norm toward the ``target_quantile`` of
    update norms (Andrew et al. 2021).
    """

    enabled: bool = False
    noise_multiplier: float = Field(default=1.0, gt=0)
    clip_norm: float = Field(default=1.0, gt=0)
    noise: ClientDPNoise = ClientDPNoise.COORDINATOR
    adaptive_clipping: bool = False
    target_quantile: float = Field(default=0.5, gt=0, lt=1)
    clip_learning_rate: float = Field(default=0.2, gt=0)
    clipped_count_stddev: float | None = Field(default=None, gt=0)


# -----------------------------------------------------------------


class PrivacyConfig(Strict):
    """Everything that limits what leaves a party or what the released model reveals."""

    secure_aggregation: SecureAggregationConfig = Field(default_factory=SecureAggregationConfig)
    record_dp: RecordDPConfig = Field(default_factory=RecordDPConfig)
    client_dp: ClientDPConfig = Field(default_factory=ClientDPConfig)
    delta: float | None = Field(default=None, gt=0, lt=1)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    # Simulation only: DP noise and sampling seeded from the job seed (same seed, same bits)
    # instead of a CSPRNG. Logged, recorded in metrics.json, refused by deployed parties.
    reproducible_noise: bool = False

    @model_validator(mode="after")
    def _delta_with_dp(self) -> PrivacyConfig:
        if (self.record_dp.enabled or self.client_dp.enabled) and self.delta is None:
            raise ValueError(
                "differential privacy is on but privacy.delta is not set; set privacy.delta, "
                "e.g. 1e-5, or below 1/rows of the smallest party"
            )
        return self


class JobConfig(Strict):
    """A whole horizontal training job (``kind = "horizontal"``, the default)."""

    kind: Literal["horizontal"] = "horizontal"
    name: str = Field(default="job", min_length=1, max_length=128)
    seed: int = Field(default=0, ge=0, lt=2**63)
    rounds: int = Field(default=10, ge=1, le=100_000)
    task: Literal["classification"] = "classification"
    data: DataConfig = Field(default_factory=DataConfig)
    parties: list[PartyConfig] = Field(default_factory=list)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)

    @model_validator(mode="after")
    def _one_data_source(self) -> JobConfig:
        d = self.data
        sources = [d.dataset is not None, d.path is not None, bool(self.parties)]
        if sum(sources) != 1:
            raise ValueError(
                "give exactly one data source: data.dataset (a built-in, see `fedsilo "
                "datasets`), data.path (one file split across simulated parties), or "
                "[[parties]] entries each with a path"
            )
        if self.parties:
            names = [p.name for p in self.parties]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"party names must be unique; repeated: {', '.join(dupes)}")
            if d.label is None:
                raise ValueError("file data needs data.label: the name of the label column")
        if d.path is not None and d.label is None:
            raise ValueError("file data needs data.label: the name of the label column")
        if d.partition is PartitionKind.BY_COLUMN and d.column is None and not self.parties:
            raise ValueError('partition = "by-column" needs data.column: the column to split by')
        # a key the chosen split does not read is a mistake, not a no-op: say so
        split = f'partition = "{d.partition.value}"'
        if d.column is not None and d.partition is not PartitionKind.BY_COLUMN:
            raise ValueError(
                f'data.column splits rows only with partition = "by-column" (this job has '
                f"{split}); remove data.column or split by it"
            )
        skewed = (PartitionKind.DIRICHLET, PartitionKind.QUANTITY_SKEW)
        # (a set alpha equal to the default cannot be told apart: a whole job re-validates)
        alpha_default = type(d).model_fields["alpha"].default
        if d.alpha != alpha_default and d.partition not in skewed:
            raise ValueError(
                f'data.alpha sets the skew of partition = "dirichlet" or "quantity-skew" (this '
                f"job has {split}); remove data.alpha or choose one of those"
            )
        if self.selection.min_parties > self.num_parties_hint():
            raise ValueError(
                f"selection.min_parties is {self.selection.min_parties} but the job has only "
                f"{self.num_parties_hint()} parties; lower min_parties"
            )
        return self

    @model_validator(mode="after")
    def _privacy_combinations(self) -> JobConfig:
        from fedsilo.config_checks import check_privacy

        check_privacy(self)
        return self

    @model_validator(mode="after")
    def _record_dp_fits_training(self) -> JobConfig:
        if self.privacy.record_dp.enabled and self.training.proximal_mu > 0:
            raise ValueError(
                "privacy.record_dp does not support training.proximal_mu > 0 (the proximal "
                "term is not clipped per example); set proximal_mu = 0"
            )
        return self

    @model_validator(mode="after")
    def _vectorize_fits_training(self) -> JobConfig:
        if self.simulation.vectorize is not VectorizeMode.ON:
            return self
        if self.model.name not in VECTORIZABLE_MODELS:
            raise ValueError(
                f'simulation.vectorize = "on" trains logreg and mlp models only, not '
                f'{self.model.name!r}; set vectorize = "auto" or "off"'
            )
        if self.privacy.record_dp.enabled:
            raise ValueError(
                'simulation.vectorize = "on" cannot train with privacy.record_dp: DP-SGD clips '
                "every example's gradient with Opacus, one party at a time; set vectorize = "
                '"auto" (record-DP parties then train one by one) or "off"'
            )
        return self

    def num_parties_hint(self) -> int:
        """Number of parties when known from the config alone (by-column decides later)."""
        if self.parties:
            return len(self.parties)
        if self.data.partition is PartitionKind.BY_COLUMN:
            return 10_000
        return self.data.num_parties

    def with_overrides(self, *, rounds: int | None = None, seed: int | None = None) -> JobConfig:
        """A copy with CLI overrides applied (validated again)."""
        raw = self.model_dump(mode="json")
        if rounds is not None:
            raw["rounds"] = rounds
        if seed is not None:
            raw["seed"] = seed
        return parse_job(raw, source="command line")

    def with_base_dir(self, base_dir: Path) -> JobConfig:
        """Data paths relative to ``base_dir`` (the job file's directory) made absolute."""
        data = self.data.model_copy(
            update={
                "path": resolve(self.data.path, base_dir),
                "test_path": resolve(self.data.test_path, base_dir),
            }
        )
        parties = [p.model_copy(update={"path": resolve(p.path, base_dir)}) for p in self.parties]
        return self.model_copy(update={"data": data, "parties": parties})


def parse_job(raw: dict[str, Any], *, source: str, base_dir: Path | None = None) -> JobConfig:
    """Validate a horizontal job dict; relative data paths are resolved against ``base_dir``."""
    from fedsilo.jobs import parse_as

    return parse_as(JobConfig, raw, source=source, base_dir=base_dir)


def load_job(path: str | Path) -> JobConfig:
    """Read and validate a horizontal TOML job file (:func:`fedsilo.jobs.load_job`: any kind)."""
    from fedsilo.jobs import load_as

    return load_as(JobConfig, path)

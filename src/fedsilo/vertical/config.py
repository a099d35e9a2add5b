"""Vertical job configuration: TOML with ``kind = "vertical"`` at the top level.

::

    kind = "vertical"
    name = "breast_cancer_vertical"
    algorithm = "hetero_lr"          # or "secureboost" (then a [secureboost] section)
    seed = 7
    test_fraction = 0.2

    [[parties]]                      # exactly one party has `label`: the guest
    name = "bank"
    path = "data/bank.csv"           # CSV or Parquet
    id_column = "id"
    label = "target"
    label_positive = "Yes"           # the positive class (0/1 labels need none)
    missing = "mean"                 # reject (default) | mean | constant, as in horizontal jobs
    columns = { region = "category" }  # declared types; others are inferred
    share_feature_names = false      # may its feature names appear in others' outputs
                                     # (importance)? Off: only its totals do

    [[parties]]
    name = "retailer"
    path = "data/retailer.csv"
    id_column = "id"

    [he]
    scheme = "ckks"                  # or "paillier"
    key_bits = 2048                  # Paillier only

    [hetero_lr]
    epochs = 10
    batch_size = 64
    learning_rate = 0.15
    l2 = 0.01
    decay = 0.0
    tolerance = 1e-4

    [secureboost]                    # only with algorithm = "secureboost"
    n_trees = 10
    max_depth = 3
    learning_rate = 0.3
    n_bins = 32
    reg_lambda = 1.0
    gamma = 0.0
    min_child_weight = 0.1
    early_stopping_rounds = 0        # > 0 needs validation_fraction > 0
    validation_fraction = 0.0

    [psi]
    fpr = 1e-9

    [tracking]                       # optional: MLflow / TensorBoard (fedsilo.tracking)
    mlflow = "file:runs/mlruns"

A scoring job (``kind = "vertical-score"``, :class:`VerticalScoreJob`) names a finished
training run and each party's file of new customers::

    kind = "vertical-score"
    name = "score_new_customers"
    run = "../runs/breast_cancer_vertical"   # simulation: the run directory (its models/);
                                             # deployment: the training job's id
    [[parties]]                              # the training run's parties, same names
    name = "bank"
    path = "data/new_bank.csv"               # no label needed; the part names its features
    id_column = "id"
    [[parties]]
    name = "provider"
    path = "data/new_provider.csv"
    id_column = "id"
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from fedsilo.config_base import Strict
from fedsilo.data.tabular import ColumnDeclaration, MissingPolicy
from fedsilo.errors import ConfigError
from fedsilo.jobs import load_as, parse_as, resolve
from fedsilo.privacy.he import CkksConfig, HeScheme, PaillierConfig
from fedsilo.tracking import TrackingConfig

if TYPE_CHECKING:  # the protocol code loads with the `vertical` extra, when a job runs
    from fedsilo.vertical.hetero_lr.arbiter import LrParams
    from fedsilo.vertical.secureboost.tree import TreeParams


class VerticalAlgorithm(enum.Enum):
    HETERO_LR = "hetero_lr"
    SECUREBOOST = "secureboost"


class VerticalPartyConfig(Strict):
    """One organization: its file (or built-in split), ID column and, for the guest, label."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    path: Path | None = None
    builtin: str | None = None
    id_column: str = "id"
    label: str | None = None
    label_positive: str | None = None
    features: list[str] | None = None
    columns: dict[str, ColumnDeclaration] = Field(default_factory=dict)
    missing: MissingPolicy = MissingPolicy.REJECT
    share_feature_names: bool = False  # simulation: stands in for the party's own [vertical] flag

    @model_validator(mode="after")
    def _one_source(self) -> VerticalPartyConfig:
        # Neither: the rows come as a DataFrame (simulate(job, data={name: df})).
        if self.path is not None and self.builtin is not None:
            raise ValueError(f"party {self.name!r}: give exactly one of 'path' or 'builtin'")
        if self.label_positive is not None and self.label is None:
            raise ValueError(
                f"party {self.name!r}: 'label_positive' names the guest's positive class; "
                "only the party with 'label' takes it"
            )
        return self


class HeConfig(Strict):
    scheme: HeScheme = HeScheme.CKKS
    key_bits: int = 2048
    poly_modulus_degree: int = 8192

    def backend_config(self) -> PaillierConfig | CkksConfig:
        if self.scheme is HeScheme.PAILLIER:
            return PaillierConfig(key_bits=self.key_bits)
        return CkksConfig(poly_modulus_degree=self.poly_modulus_degree)


class HeteroLrConfig(Strict):
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=0.15, gt=0)
    l2: float = Field(default=0.01, ge=0)
    decay: float = Field(default=0.0, ge=0)
    tolerance: float = Field(default=1e-4, ge=0)

    def params(self) -> LrParams:
        from fedsilo.vertical.hetero_lr.arbiter import LrParams

        return LrParams(**self.model_dump())


class SecureBoostConfig(Strict):
    """``[secureboost]``: the tree parameters (:class:`~fedsilo.vertical.secureboost.TreeParams`)."""

    n_trees: int = Field(default=10, ge=1)
    max_depth: int = Field(default=3, ge=1, le=16)
    learning_rate: float = Field(default=0.3, gt=0, le=1)
    n_bins: int = Field(default=32, ge=2, le=256)
    reg_lambda: float = Field(default=1.0, ge=0)
    gamma: float = Field(default=0.0, ge=0)
    min_child_weight: float = Field(default=0.1, gt=0)
    early_stopping_rounds: int = Field(default=0, ge=0)
    validation_fraction: float = Field(default=0.0, ge=0, lt=0.5)

    @model_validator(mode="after")
    def _early_stopping(self) -> SecureBoostConfig:
        if self.early_stopping_rounds and not self.validation_fraction:
            raise ValueError(
                "secureboost.early_stopping_rounds needs secureboost.validation_fraction > 0 "
                "(the share of training rows held out to watch the loss)"
            )
        return self

    def params(self) -> TreeParams:
        from fedsilo.vertical.secureboost.tree import TreeParams

        return TreeParams(**self.model_dump())


class PsiConfig(Strict):
    fpr: float | None = Field(default=None, gt=0, lt=1)
    batch_size: int = Field(default=100_000, ge=1)


class VerticalJobConfig(Strict):
    """A vertical job (``kind = "vertical"``): PSI alignment, then hetero LR or SecureBoost."""

    kind: Literal["vertical"] = "vertical"
    name: str = Field(default="vertical", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    algorithm: VerticalAlgorithm = VerticalAlgorithm.HETERO_LR
    seed: int = 0
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    parties: list[VerticalPartyConfig] = Field(min_length=2)
    he: HeConfig = HeConfig()
    hetero_lr: HeteroLrConfig = HeteroLrConfig()
    secureboost: SecureBoostConfig = SecureBoostConfig()
    psi: PsiConfig = PsiConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _roles(self) -> VerticalJobConfig:
        names = [p.name for p in self.parties]
        if len(set(names)) != len(names):
            raise ValueError(f"party names must be unique, got {names}")
        guests = [p.name for p in self.parties if p.label is not None]
        if len(guests) != 1:
            raise ValueError(
                "exactly one party must set 'label' (the guest, label holder); "
                f"found {len(guests)}: {guests}"
            )
        other = {
            VerticalAlgorithm.HETERO_LR: "secureboost",
            VerticalAlgorithm.SECUREBOOST: "hetero_lr",
        }[self.algorithm]
        if other in self.model_fields_set:
            raise ValueError(
                f"the job sets [{other}] but algorithm is {self.algorithm.value!r}; "
                f"set algorithm = {other!r} or remove the [{other}] section"
            )
        return self

    @property
    def rounds(self) -> int:
        """Epochs (hetero LR) or trees (SecureBoost): the job's unit of training progress."""
        if self.algorithm is VerticalAlgorithm.SECUREBOOST:
            return self.secureboost.n_trees
        return self.hetero_lr.epochs

    def with_overrides(
        self, *, rounds: int | None = None, seed: int | None = None
    ) -> VerticalJobConfig:
        """A copy with CLI overrides: ``rounds`` sets the epochs (hetero LR) or trees
        (SecureBoost); validated again."""
        raw = self.model_dump(mode="json", exclude_unset=True)
        if rounds is not None:
            section = (
                "secureboost" if self.algorithm is VerticalAlgorithm.SECUREBOOST else "hetero_lr"
            )
            unit = "n_trees" if section == "secureboost" else "epochs"
            raw[section] = {**raw.get(section, {}), unit: rounds}
        if seed is not None:
            raw["seed"] = seed
        return parse_vertical_job(raw, source="command line")

    def with_base_dir(self, base_dir: Path) -> VerticalJobConfig:
        """Party files relative to ``base_dir`` (the job file's directory) made absolute."""
        parties = [p.model_copy(update={"path": resolve(p.path, base_dir)}) for p in self.parties]
        return self.model_copy(update={"parties": parties})

    @property
    def guest(self) -> VerticalPartyConfig:
        return next(p for p in self.parties if p.label is not None)

    @property
    def hosts(self) -> list[VerticalPartyConfig]:
        return [p for p in self.parties if p.label is None]


def parse_vertical_job(
    raw: dict[str, Any], *, source: str = "vertical job", base_dir: Path | None = None
) -> VerticalJobConfig:
    """Validate a vertical job dict; relative party paths resolve against ``base_dir``."""
    return parse_as(VerticalJobConfig, raw, source=source, base_dir=base_dir)


def load_vertical_job(path: str | Path) -> VerticalJobConfig:
    return load_as(VerticalJobConfig, path)


class ScorePartyConfig(Strict):
    """One organization of a scoring job: its file of new customers and their ID column."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    path: Path
    id_column: str = "id"


class VerticalScoreJob(Strict):
    """A scoring job (``kind = "vertical-score"``): saved parts of ``run`` score new rows.

    The roles, algorithm, HE scheme and each party's features come from the training run;
    the parties are matched privately (PSI) as in training.
    """

    kind: Literal["vertical-score"] = "vertical-score"
    name: str = Field(default="vertical-score", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    run: str = Field(min_length=1)
    seed: int = 0
    parties: list[ScorePartyConfig] = Field(min_length=2)
    psi: PsiConfig = PsiConfig()

    @model_validator(mode="after")
    def _unique(self) -> VerticalScoreJob:
        names = [p.name for p in self.parties]
        if len(set(names)) != len(names):
            raise ValueError(f"party names must be unique, got {names}")
        return self

    @property
    def rounds(self) -> int:
        return 1

    def with_base_dir(self, base_dir: Path) -> VerticalScoreJob:
        """Party files and the run directory relative to the job file's directory."""
        parties = [p.model_copy(update={"path": resolve(p.path, base_dir)}) for p in self.parties]
        run = resolve(Path(self.run), base_dir)
        return self.model_copy(update={"parties": parties, "run": str(run)})

    def training_job(self, trained: VerticalJobConfig) -> VerticalJobConfig:
        """The training job's roles and settings over this job's files and ID columns.

        Refuses a scoring job whose parties are not the training run's.
        """
        mine = {p.name: p for p in self.parties}
        theirs = [p.name for p in trained.parties]
        if sorted(mine) != sorted(theirs):
            raise ConfigError(
                f"scoring job {self.name!r}: parties {sorted(mine)} are not those of training "
                f"run {self.run!r} ({sorted(theirs)}); list exactly the run's parties"
            )
        parties = [
            p.model_copy(
                update={
                    "path": mine[p.name].path,
                    "builtin": None,
                    "id_column": mine[p.name].id_column,
                    "features": None,
                }
            )
            for p in trained.parties
        ]
        return trained.model_copy(update={"parties": parties, "psi": self.psi, "seed": self.seed})


def load_score_job(path: str | Path) -> VerticalScoreJob:
    return load_as(VerticalScoreJob, path)

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
"""

from __future__ import annotations

import enum
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedsilo.config import _known_keys, _suggest
from fedsilo.errors import ConfigError
from fedsilo.privacy.he import CkksConfig, HeScheme, PaillierConfig
from fedsilo.vertical.hetero_lr.arbiter import LrParams
from fedsilo.vertical.secureboost.tree import TreeParams


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerticalAlgorithm(enum.Enum):
    HETERO_LR = "hetero_lr"
    SECUREBOOST = "secureboost"


class VerticalPartyConfig(_Strict):
    """One organization: its file (or built-in split), ID column and, for the guest, label."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    path: Path | None = None
    builtin: str | None = None
    id_column: str = "id"
    label: str | None = None
    features: list[str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> VerticalPartyConfig:
        if (self.path is None) == (self.builtin is None):
            raise ValueError(f"party {self.name!r}: give exactly one of 'path' or 'builtin'")
        return self


class HeConfig(_Strict):
    scheme: HeScheme = HeScheme.CKKS
    key_bits: int = 2048
    poly_modulus_degree: int = 8192

    def backend_config(self) -> PaillierConfig | CkksConfig:
        if self.scheme is HeScheme.PAILLIER:
            return PaillierConfig(key_bits=self.key_bits)
        return CkksConfig(poly_modulus_degree=self.poly_modulus_degree)


class HeteroLrConfig(_Strict):
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=0.15, gt=0)
    l2: float = Field(default=0.01, ge=0)
    decay: float = Field(default=0.0, ge=0)
    tolerance: float = Field(default=1e-4, ge=0)

    def params(self) -> LrParams:
        return LrParams(**self.model_dump())


class SecureBoostConfig(_Strict):
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
        return TreeParams(**self.model_dump())


class PsiConfig(_Strict):
    fpr: float | None = Field(default=None, gt=0, lt=1)
    batch_size: int = Field(default=100_000, ge=1)


class VerticalJobConfig(_Strict):
    kind: str = "vertical"
    name: str = Field(default="vertical", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    algorithm: VerticalAlgorithm = VerticalAlgorithm.HETERO_LR
    seed: int = 0
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    parties: list[VerticalPartyConfig] = Field(min_length=2)
    he: HeConfig = HeConfig()
    hetero_lr: HeteroLrConfig = HeteroLrConfig()
    secureboost: SecureBoostConfig = SecureBoostConfig()
    psi: PsiConfig = PsiConfig()

    @model_validator(mode="after")
    def _roles(self) -> VerticalJobConfig:
        if self.kind != "vertical":
            raise ValueError(f"kind must be 'vertical' for a vertical job, got {self.kind!r}")
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
    def guest(self) -> VerticalPartyConfig:
        return next(p for p in self.parties if p.label is not None)

    @property
    def hosts(self) -> list[VerticalPartyConfig]:
        return [p for p in self.parties if p.label is None]


def is_vertical(raw: dict[str, Any]) -> bool:
    """Whether a parsed TOML job is a vertical one (``kind = "vertical"``)."""
    return raw.get("kind") == "vertical"


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"job file {path} does not exist; check the path") from None
    except OSError as exc:
        raise ConfigError(f"job file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def parse_vertical_job(
    raw: dict[str, Any], *, source: str = "vertical job", base_dir: Path | None = None
) -> VerticalJobConfig:
    """Validate a vertical job dict; relative party paths resolve against ``base_dir``."""
    try:
        job = VerticalJobConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from None
    if base_dir is not None:
        parties = [
            p.model_copy(update={"path": base_dir / p.path})
            if p.path is not None and not p.path.is_absolute()
            else p
            for p in job.parties
        ]
        job = job.model_copy(update={"parties": parties})
    return job


def load_vertical_job(path: str | Path) -> VerticalJobConfig:
    path = Path(path)
    return parse_vertical_job(read_toml(path), source=str(path), base_dir=path.parent)


def _explain(exc: ValidationError, source: str) -> str:
    known = _known_keys(VerticalJobConfig)
    lines = [f"{source}: the vertical job configuration is invalid:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
        idx = next((p for p in err["loc"] if isinstance(p, int)), None)
        where = loc + (f" (entry {idx + 1})" if idx is not None else "")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            hint = _suggest(loc, known)
            lines.append(
                f"  key '{where}' is not a known key."
                + (f" Did you mean '{hint}'?" if hint else "")
            )
        elif not loc:
            lines.append(f"  {msg}")
        else:
            lines.append(f"  key '{where}': {msg} (got {err.get('input')!r})")
    return "\n".join(lines)

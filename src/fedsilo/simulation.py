"""In-process simulation: many parties on one machine, the deployment's round loop.

``simulate(job)`` builds one :class:`~fedsilo.runtime.party.PartyAgent` per party from the
job's data source, connects them with the in-process transport and runs the same
:class:`~fedsilo.runtime.coordinator.Coordinator` a real deployment runs. The simulation may
also hold a central test split (global metrics) and, with ``baseline=True``, trains the same
model on the pooled training rows for comparison: things only a simulation can do.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pandas as pd
import torch
from torch import nn

from fedsilo.config import (
    VECTORIZABLE_MODELS,
    VECTORIZE_MIN_PARTIES,
    JobConfig,
    VectorizeMode,
    load_job,
    parse_job,
)
from fedsilo.data.builtin import BuiltinDataset, load_builtin
from fedsilo.data.partition import (
    ByColumnPartitioner,
    DirichletPartitioner,
    IidPartitioner,
    PartitionKind,
    QuantitySkewPartitioner,
)
from fedsilo.data.tabular import ColumnType, check_frame_parties, frame_source, read_frame
from fedsilo.data.typed import Declared, read_raw, typed_frame
from fedsilo.errors import ConfigError
from fedsilo.models import Params, build_model, set_params
from fedsilo.preflight import check_headers, require_extras
from fedsilo.privacy.dp_fedavg import ClientDPPolicy
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.privacy.secagg.identity import Identity, simulated_identities
from fedsilo.privacy.secagg.params import ThreatModel
from fedsilo.results import Result
from fedsilo.runtime.batched import BatchedTrainer
from fedsilo.runtime.budget_outlook import check_budgets
from fedsilo.runtime.coordinator import Coordinator, RoundRecord, local_train_config
from fedsilo.runtime.party import LocalData, PartyAgent, split_holdout
from fedsilo.runtime.seeds import derive_seed, holdout_seed
from fedsilo.runtime.setup import SetupResult

if TYPE_CHECKING:
    from fedsilo.jobs import Job, TrainingJob
    from fedsilo.vertical.config import VerticalJobConfig
    from fedsilo.vertical.result import VerticalResult
from fedsilo.runtime.transport import InProcessTransport, Transport
from fedsilo.tracking import tracked
from fedsilo.training import Trainer, classification_metrics, predict_proba, train_local

BUILTIN_LABEL = "label"


@dataclass(frozen=True)
class SimulatedData:
    """Every simulated party's rows, the central test split, and any audit canaries.

    ``canaries[name]`` are rows party ``name`` trains on besides its own (never held out, not
    in its preprocessing statistics): only the privacy audit (:mod:`fedsilo.privacy_audit`)
    sets them.
    """

    parties: dict[str, LocalData]
    test: LocalData | None
    canaries: Mapping[str, LocalData] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.canaries) - set(self.parties))
        if unknown:
            raise ConfigError(f"canaries for unknown parties: {', '.join(unknown)}")


def _partition(
    job: JobConfig, labels: np.ndarray, column: pd.Series | None
) -> tuple[list[str], list[np.ndarray]]:
    """Party names and each party's row indices."""
    if column is not None:
        by_column = ByColumnPartitioner(values=column.to_numpy())
        return [str(v) for v in by_column.names], by_column.partition(labels)
    parts = _partition_rows(job, labels)
    return [f"party-{i + 1}" for i in range(len(parts))], parts


def _partition_rows(job: JobConfig, labels: np.ndarray) -> list[np.ndarray]:
    d = job.data
    seed = derive_seed(job.seed, "partition")
    if d.partition is PartitionKind.IID:
        return IidPartitioner(num_partitions=d.num_parties, seed=seed).partition(labels)
    if d.partition is PartitionKind.DIRICHLET:
        return DirichletPartitioner(
            num_partitions=d.num_parties,
            seed=seed,
            alpha=d.alpha,
            min_partition_size=d.min_partition_size,
        ).partition(labels)
    if d.partition is PartitionKind.BY_COLUMN:  # a column was found for tables: images here
        raise ConfigError(
            f'partition = "by-column" needs tabular data; {d.dataset!r} holds images. '
            'Use "iid", "dirichlet" or "quantity-skew".'
        )
    return QuantitySkewPartitioner(
        num_partitions=d.num_parties,
        seed=seed,
        alpha=d.alpha,
        min_partition_size=d.min_partition_size,
    ).partition(labels)


def _test_split(n: int, job: JobConfig) -> tuple[np.ndarray, np.ndarray]:
    if job.data.test_fraction == 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    train, test = split_holdout(n, job.data.test_fraction, derive_seed(job.seed, "test-split"))
    return train, test


def _split_column(job: JobConfig, table: pd.DataFrame, where: str) -> pd.Series | None:
    if job.data.partition is not PartitionKind.BY_COLUMN:
        return None
    col = job.data.column
    assert col is not None
    if col not in table.columns:
        raise ConfigError(
            f"data.column = {col!r} is not a column of {where}; columns are: "
            f"{', '.join(map(str, table.columns))}"
        )
    return table[col]


def _from_party_files(job: JobConfig, frames: Mapping[str, object]) -> SimulatedData:
    parties = {}
    for p in job.parties:
        if p.name in frames:
            table = read_frame(frames[p.name], party=p.name)
            parties[p.name] = LocalData(frame_source(p.name), table=table)
            continue
        if p.path is None:
            raise ConfigError(
                f"party {p.name!r} has no data: give it a path in [[parties]] or pass its rows "
                f"as a DataFrame, fedsilo.simulate(job, data={{{p.name!r}: df}})"
            )
        parties[p.name] = LocalData(str(p.path), table=read_raw(p.path, party=p.name))
    test = None
    if job.data.test_path is not None:
        table = read_raw(job.data.test_path, party="test set")
        test = LocalData(str(job.data.test_path), table=table)
    return SimulatedData(parties, test)


def load_simulated_data(
    job: JobConfig, frames: Mapping[str, object] | None = None
) -> SimulatedData:
    """Build every party's local rows (and the central test split) from the job's source.

    ``frames`` (party name -> pandas DataFrame) give parties' rows instead of their files;
    each goes through the same checks as a file's rows.
    """
    frames = dict(frames or {})
    check_frame_parties(frames, [p.name for p in job.parties], job=job.name)
    if job.parties:
        return _from_party_files(job, frames)
    d = job.data
    table: pd.DataFrame | None
    ds: BuiltinDataset | None = None
    if d.dataset is not None:
        if d.label is not None or d.id is not None:
            raise ConfigError(
                "data.label and data.id apply to file data; built-in datasets "
                "name their own label. Remove them or use data.path."
            )
        ds = load_builtin(d.dataset)
        labels = np.asarray(ds.labels)
        if ds.features is not None:
            table = ds.features.assign(**{BUILTIN_LABEL: [ds.class_names[i] for i in labels]})
        else:
            table = None
        where = f"built-in dataset {d.dataset!r}"
    else:
        assert d.path is not None and d.label is not None
        table = read_raw(d.path, party="simulation source")
        if d.label not in table.columns:
            raise ConfigError(
                f"data.label = {d.label!r} is not a column of {d.path}; columns "
                f"are: {', '.join(map(str, table.columns))}"
            )
        label = typed_frame(
            table,
            {d.label: Declared(ColumnType.CATEGORY, skip_missing=True, label=True)},
            party="simulation source",
            source=str(d.path),
        )[d.label]
        labels = pd.factorize(label.astype(str), sort=True)[0]
        where = str(d.path)

    train_idx, test_idx = _test_split(len(labels), job)
    column = None if table is None else _split_column(job, table.iloc[train_idx], where)
    names, parts = _partition(job, labels[train_idx], column)

    def rows(idx: np.ndarray, source: str) -> LocalData:
        if table is not None:
            return LocalData(source, table=table.iloc[idx].reset_index(drop=True))
        assert ds is not None and ds.images is not None
        return LocalData(
            source, images=ds.images[idx], labels=labels[idx], classes=tuple(ds.class_names)
        )

    parties = {
        name: rows(train_idx[part], f"{where} (simulated party {name})")
        for name, part in zip(names, parts, strict=True)
    }
    test = rows(test_idx, f"{where} (test split)") if len(test_idx) else None
    return SimulatedData(parties, test)


class TestSetEvaluator:
    """Global metrics on a test split the simulation's coordinator holds."""

    def __init__(self, data: LocalData) -> None:
        self._data = data
        self._xy: tuple[np.ndarray, np.ndarray] | None = None
        self._model: nn.Module | None = None

    def prepare(self, setup: SetupResult) -> None:
        self._xy = _features(self._data, setup, "test set")
        self._model = build_model(setup.model_spec, seed=0)  # weights come with each call

    def evaluate(self, params: Params) -> dict[str, float]:
        assert self._model is not None and self._xy is not None
        model = self._model
        set_params(model, params)
        return classification_metrics(self._xy[1], predict_proba(model, self._xy[0]))

    @property
    def features_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        assert self._xy is not None
        return self._xy


def _features(data: LocalData, setup: SetupResult, who: str) -> tuple[np.ndarray, np.ndarray]:
    if data.table is not None:
        assert setup.plan is not None
        return setup.plan.transform(data.table, party=who, source=data.source)
    assert data.images is not None and data.labels is not None
    return data.images, data.labels


Rows = tuple[np.ndarray, np.ndarray]


def party_rows(job: JobConfig, sim: SimulatedData, setup: SetupResult) -> list[tuple[Rows, Rows]]:
    """Each party's (training, held-out) model inputs and labels, in ``setup.parties`` order,
    exactly as the party splits them at setup (simulation only: the baseline, benchmarks)."""
    out = []
    for i, name in enumerate(setup.parties):
        x, y = _features(sim.parties[name], setup, name)
        tr, ho = split_holdout(len(y), job.data.holdout_fraction, holdout_seed(job.seed, i))
        out.append(((x[tr], y[tr]), (x[ho], y[ho])))
    return out


def train_baseline(
    job: JobConfig, sim: SimulatedData, setup: SetupResult, evaluator: TestSetEvaluator | None
) -> dict[str, float]:
    """The same model trained on all parties' training rows pooled (simulation only)."""
    train_x, train_y, hold_x, hold_y = [], [], [], []
    for (x, y), (hx, hy) in party_rows(job, sim, setup):
        train_x.append(x)
        train_y.append(y)
        hold_x.append(hx)
        hold_y.append(hy)
    model = build_model(setup.model_spec, seed=job.seed)
    # The same local training, as one long run over the pooled rows (FedProx has no anchor here).
    cfg = dataclasses.replace(
        local_train_config(job.training), epochs=job.training.epochs * job.rounds, proximal_mu=0.0
    )
    train_local(
        model,
        np.concatenate(train_x),
        np.concatenate(train_y),
        cfg,
        seed=derive_seed(job.seed, "baseline"),
    )
    if evaluator is not None:
        x_test, y_test = evaluator.features_and_labels
    else:
        x_test, y_test = np.concatenate(hold_x), np.concatenate(hold_y)
    return classification_metrics(y_test, predict_proba(model, x_test))


def as_job(config: JobConfig | str | Path | Mapping[str, Any]) -> JobConfig:
    """A horizontal job from a config, a TOML path or a dict."""
    if isinstance(config, JobConfig):
        return config
    if isinstance(config, str | Path):
        return load_job(config)
    return parse_job(dict(config), source="Python config")


def as_training_job(
    config: Job | str | Path | Mapping[str, Any],
    frames: Mapping[str, object] | None = None,
) -> TrainingJob:
    """A training job of any kind (horizontal or vertical) from a config, a path or a dict.

    A horizontal dict with no data source and no ``parties`` takes its parties from the
    names of ``frames`` (``simulate({...}, data={"bank-a": df_a, ...})``).
    """
    from fedsilo.jobs import load_job as load_any
    from fedsilo.jobs import parse_job as parse_any

    if isinstance(config, str | Path):
        job = load_any(config)
    elif isinstance(config, Mapping):
        raw = dict(config)
        data = raw.get("data") if isinstance(raw.get("data"), Mapping) else {}
        sourceless = "parties" not in raw and not {"dataset", "path"} & set(data or {})
        if frames and sourceless and raw.get("kind", "horizontal") == "horizontal":
            raw["parties"] = [{"name": name} for name in frames]
        job = parse_any(raw, source="Python config")
    else:
        job = config
    from fedsilo.vertical.config import VerticalJobConfig

    if isinstance(job, JobConfig | VerticalJobConfig):
        return job
    if job.kind == "vertical-score":
        raise ConfigError(
            f"job {job.name!r} is a vertical scoring job (kind = 'vertical-score'); run it "
            "with `fedsilo simulate JOB` or fedsilo.vertical.scoring.simulate_vertical_score"
        )
    raise ConfigError(
        f"job {job.name!r} is an analytics job (kind = 'analytics'); it answers queries: "
        "use fedsilo.query(job, sql) or `fedsilo query JOB SQL`"
    )


def simulated_party_privacy(job: JobConfig, party: str, audit_dir: Path | None) -> PartyPrivacy:
    """A simulated party's own privacy settings: its budget, a fresh audit log and ledger.

    With ``audit_dir`` the party keeps ``<party>.jsonl`` (its log) and ``<party>.ledger.sqlite``
    (its ledger, with the signed anchors of its log) there; without, its ledger is in memory.
    """
    log_path = ledger = None
    if audit_dir is not None:
        log_path = Path(audit_dir) / f"{party}.jsonl"
        ledger = Path(audit_dir) / f"{party}.ledger.sqlite"
        for stale in (log_path, ledger, *ledger.parent.glob(f"{ledger.name}-*")):
            stale.unlink(missing_ok=True)
    return PartyPrivacy(
        max_epsilon=job.privacy.budget.max_epsilon_for(party),
        audit_log=log_path,
        ledger=ledger,
        # the job file stands in for each simulated party's own config
        allow_reproducible_noise=job.privacy.reproducible_noise,
        client_dp=ClientDPPolicy.of_job(job.privacy.client_dp),
    )


def simulated_party_identities(job: JobConfig, names: Iterable[str]) -> dict[str, Identity]:
    """One signing identity per simulated party, created with it, and the shared roster.

    The job's ``[privacy.secure_aggregation]`` rates stand in for each party's own.
    """
    return simulated_identities(names, simulated_threat(job))


def simulated_threat(job: JobConfig) -> ThreatModel:
    sa = job.privacy.secure_aggregation
    return ThreatModel(sa.dropout_rate, sa.corruption_rate)


def simulated_agents(
    job: JobConfig,
    sim: SimulatedData,
    identities: Mapping[str, Identity],
    audit_dir: Path | None,
    trainer: Trainer = train_local,
) -> dict[str, PartyAgent]:
    """The simulated parties named in ``identities``, each over its rows in ``sim``."""
    return {
        name: PartyAgent(
            name,
            sim.parties[name],
            PrivacyGuard(name, simulated_party_privacy(job, name, audit_dir)),
            identity=identity,
            canaries=sim.canaries.get(name),
            trainer=trainer,
        )
        for name, identity in identities.items()
    }


@dataclass(frozen=True)
class Progress:
    """Callbacks a simulation calls as it goes (each optional): horizontal rounds, vertical
    PSI steps, hetero-LR epochs, SecureBoost trees, and warnings a person should read before
    training (also logged): a party whose privacy budget will run out during the job. Rounds,
    epochs and trees count from 1, as in ``metrics.json``'s history."""

    on_round: Callable[[RoundRecord], None] | None = None
    on_warning: Callable[[str], None] | None = None
    on_psi_step: Callable[[str, int, int], None] | None = None
    on_epoch: Callable[[int, float, float], None] | None = None
    on_tree: Callable[[int, float], None] | None = None


@overload
def simulate(
    config: JobConfig,
    *,
    baseline: bool = ...,
    rounds: int | None = ...,
    seed: int | None = ...,
    progress: Progress | None = ...,
    audit_dir: Path | None = ...,
    data: Mapping[str, pd.DataFrame] | None = ...,
    ray: str | None = ...,
) -> Result: ...
@overload
def simulate(
    config: VerticalJobConfig,
    *,
    baseline: bool = ...,
    rounds: int | None = ...,
    seed: int | None = ...,
    progress: Progress | None = ...,
    audit_dir: Path | None = ...,
    data: Mapping[str, pd.DataFrame] | None = ...,
    ray: str | None = ...,
) -> VerticalResult: ...
@overload
def simulate(
    config: str | Path | Mapping[str, Any],
    *,
    baseline: bool = ...,
    rounds: int | None = ...,
    seed: int | None = ...,
    progress: Progress | None = ...,
    audit_dir: Path | None = ...,
    data: Mapping[str, pd.DataFrame] | None = ...,
    ray: str | None = ...,
) -> Result | VerticalResult: ...
def simulate(
    config: TrainingJob | str | Path | Mapping[str, Any],
    *,
    baseline: bool = False,
    rounds: int | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
    audit_dir: Path | None = None,
    data: Mapping[str, pd.DataFrame] | None = None,
    ray: str | None = None,
) -> Result | VerticalResult:
    """Run a training job of any kind with every party simulated in this process.

    ``config`` is a job (horizontal :class:`JobConfig` or vertical ``VerticalJobConfig``), a
    path to a TOML job file of either kind, or a dict of the same shape. ``rounds`` overrides
    the rounds (horizontal), epochs (hetero LR) or trees (SecureBoost); ``seed`` the seed.
    ``result.save(dir)`` writes the model, metrics.json (one schema for every kind) and the
    report. With ``audit_dir`` every horizontal party keeps its audit log (and privacy ledger)
    in ``audit_dir/<party>.jsonl``; simulated parties are new each run, so logs left there by
    an earlier run are replaced. A job with ``[tracking]`` logs to MLflow / TensorBoard as it
    runs (:mod:`fedsilo.tracking`); ``result.tracking`` says where. With ``ray`` (a Ray
    cluster's address, "auto" for the one this machine belongs to, or "local" for a new one in
    this process) a horizontal job's parties run as Ray actors (:mod:`fedsilo.ray_simulation`):
    the same model as in this process for the same seed.

    ``data`` maps party names to pandas DataFrames holding their rows, in place of the files
    the job names (horizontal and vertical); each goes through the checks a file's rows go
    through. A horizontal dict job with no data source takes its parties from ``data``.
    """
    job = as_training_job(config, data)
    require_extras(job, ray=ray)
    if ray is not None and data is not None:
        raise ConfigError(
            "data= DataFrames stay in this process; with ray= every Ray host reads the job's "
            "own data source: write the frames to files and name them in the job"
        )
    check_headers(job, skip=frozenset(data or {}))
    if rounds is not None or seed is not None:
        job = job.with_overrides(rounds=rounds, seed=seed)
    progress = progress if progress is not None else Progress()
    with tracked(job) as tracker:
        result: Result | VerticalResult
        if isinstance(job, JobConfig):
            on_round = progress.on_round
            if tracker is not None:
                on_round = _also(on_round, lambda r: tracker.entry(r.to_json()))
            result = simulate_horizontal(
                job,
                baseline=baseline,
                on_round=on_round,
                on_warning=progress.on_warning,
                audit_dir=audit_dir,
                data=load_simulated_data(job, data),
                ray=ray,
            )
        else:
            from fedsilo.vertical.simulation import simulate_vertical

            result = simulate_vertical(
                job,
                baseline=baseline,
                on_epoch=progress.on_epoch,
                on_tree=progress.on_tree,
                on_psi_step=progress.on_psi_step,
                frames=data,
            )
        if tracker is not None:
            tracker.finish(result)
    return result


def _also(
    first: Callable[[RoundRecord], None] | None, then: Callable[[RoundRecord], None]
) -> Callable[[RoundRecord], None]:
    def both(record: RoundRecord) -> None:
        if first is not None:
            first(record)
        then(record)

    return both


def simulation_workers(job: JobConfig) -> int:
    """``[simulation] workers``, by default the cores this process may run on."""
    if job.simulation.workers is not None:
        return job.simulation.workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def vectorized(job: JobConfig, num_parties: int) -> bool:
    """Whether the simulated parties train together (``[simulation] vectorize``)."""
    mode = job.simulation.vectorize
    if mode is VectorizeMode.ON:
        return True  # the config refused what cannot be vectorized
    if mode is VectorizeMode.OFF or job.model.name not in VECTORIZABLE_MODELS:
        return False
    per_round = job.selection.per_round(num_parties)  # min_parties <= num_parties (config)
    return not job.privacy.record_dp.enabled and per_round >= VECTORIZE_MIN_PARTIES


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Every simulated party (and the coordinator) computes with one torch thread; parallel
    work comes from the worker pool, never from threads fighting over the cores. The
    arithmetic then does not depend on the machine's core count either."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def simulate_horizontal(
    job: JobConfig,
    *,
    baseline: bool = False,
    on_round: Callable[[RoundRecord], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    audit_dir: Path | None = None,
    data: SimulatedData | None = None,
    ray: str | None = None,
) -> Result:
    """Run a horizontal job with every party simulated in this process (:func:`simulate`).

    ``data`` replaces the rows the job's data source would give (:func:`load_simulated_data`),
    e.g. with the privacy audit's canaries planted. With ``ray`` (a Ray address, "auto" or
    "local") the parties run as Ray actors instead (:mod:`fedsilo.ray_simulation`); the
    coordinator stays in this process.

    Before round 1 the parties' privacy budgets (the job's ``[privacy.budget]``, each
    simulated party's own) are checked against the plan (:mod:`fedsilo.runtime.budget_outlook`):
    a party whose budget will run out is logged and handed to ``on_warning``; a job that
    would then certainly stop raises :class:`~fedsilo.errors.BudgetExhaustedError` before
    any party trains.
    """
    started = time.monotonic()
    sim = load_simulated_data(job) if data is None else data
    identities = simulated_party_identities(job, sim.parties)
    evaluator = TestSetEvaluator(sim.test) if sim.test is not None else None
    connected = False
    if ray is not None:
        if sim.canaries:
            raise ConfigError("the privacy audit's canaries are not available on Ray")
        from fedsilo import ray_simulation

        connected = ray_simulation.connect(ray)
        transport: Transport = ray_simulation.start_hosts(
            job,
            {n: i.signing_key for n, i in identities.items()},
            next(iter(identities.values())).roster,
            audit_dir,
            job.simulation.workers,
        )
    else:
        batched = BatchedTrainer() if vectorized(job, len(sim.parties)) else None
        agents = simulated_agents(
            job, sim, identities, audit_dir, train_local if batched is None else batched
        )
        transport = InProcessTransport(agents, workers=simulation_workers(job), batched=batched)
    coordinator = Coordinator(
        job,
        transport,
        central_evaluator=evaluator,
        on_round=on_round,
        on_setup=lambda setup: check_budgets(job, setup, on_warning),
    )
    try:
        with one_torch_thread():
            outcome = coordinator.run()
            baseline_metrics = (
                train_baseline(job, sim, outcome.setup, evaluator) if baseline else None
            )
            permutation = central_permutation_importance(
                job, outcome.setup, outcome.params, evaluator
            )
    finally:
        if connected:
            import ray as ray_lib

            ray_lib.shutdown()
    return Result(
        job=job,
        setup=outcome.setup,
        params=outcome.params,
        history=outcome.history,
        baseline=baseline_metrics,
        wall_time_s=time.monotonic() - started,
        test_examples=0 if sim.test is None else sim.test.num_rows,
        permutation_importance=permutation,
    )


def central_permutation_importance(
    job: JobConfig, setup: SetupResult, params: Params, evaluator: TestSetEvaluator | None
) -> dict[str, Any] | None:
    """Permutation importance of a tabular model other than ``logreg`` (which reports its
    coefficients) on the central test split, per original column; ``None`` otherwise."""
    if evaluator is None or setup.plan is None or job.model.name == "logreg":
        return None
    from fedsilo.training.importance import column_groups, permutation_importance

    model = build_model(setup.model_spec, seed=0)
    set_params(model, params)
    x, y = evaluator.features_and_labels
    found = permutation_importance(
        lambda rows: predict_proba(model, rows),
        x,
        y,
        column_groups(setup.plan),
        rng=np.random.default_rng(derive_seed(job.seed, "importance/permutation")),
    )
    return {"global": {"role": "global model (central test split)", **found}}

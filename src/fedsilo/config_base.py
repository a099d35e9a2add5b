"""What every fedsilo configuration file shares: one strict base, one TOML reader, one explainer.

Job files of every kind (:mod:`fedsilo.jobs`) and the deployment's server and party files
(:mod:`fedsilo.deploy.config`) are pydantic models derived from :class:`Strict` (unknown keys
are errors, values are frozen), read by :func:`read_toml` / :func:`parse_toml` and validated
by :func:`validate`, which turns a pydantic ``ValidationError`` into one
:class:`~fedsilo.errors.ConfigError` naming every bad key, with a "Did you mean" for a
misspelled one::

    ConfigError: examples/job.toml: the job configuration is invalid:
      key 'training.lr' is not a known key. Did you mean 'training.learning_rate'?
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from fedsilo.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

_MAX_INPUT_REPR = 120


class Strict(BaseModel):
    """The base of every configuration model: unknown keys are errors; instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


def refuse_keys(raw: Any, reasons: Mapping[str, str]) -> Any:
    """``raw`` unchanged, or a ValueError with the reason for the first refused key it holds.

    For a model's ``mode="before"`` validator: keys that moved elsewhere or belong to another
    kind of job get a reason that says where they go, not a bare "unknown key".
    """
    if isinstance(raw, dict):
        for key, reason in reasons.items():
            if key in raw:
                raise ValueError(f"'{key}' {reason}")
    return raw


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    """TOML text to a dict; a syntax error names ``source`` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None


def read_toml(path: str | Path, *, what: str = "job file") -> dict[str, Any]:
    """Read and parse a TOML file; a missing or unreadable file names ``what`` and the path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; check the path") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    return parse_toml(text, source=str(path))


def validate(
    model: type[M], raw: dict[str, Any], *, source: str, what: str = "job configuration"
) -> M:
    """``model.model_validate(raw)``, or one :class:`ConfigError` explaining every bad key."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain(exc, source, known_keys(model), what=what)) from None


def known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key ``model`` accepts (``training.learning_rate``), nested models included."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if sub is None:
            args = getattr(ann, "__args__", ())
            sub = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None:
            keys.extend(known_keys(sub, prefix + name + "."))
    return keys


def suggest(key: str, known: list[str]) -> str | None:
    """The known key a misspelled or abbreviated ``key`` most likely meant.

    Candidates are the siblings of ``key`` (same section); a close spelling wins (difflib),
    then an abbreviation by word initials (``lr`` -> ``learning_rate``) or by letters in order.
    """
    parent, _, leaf = key.rpartition(".")
    prefix = parent + "." if parent else ""
    siblings = [
        k[len(prefix) :] for k in known if k.startswith(prefix) and "." not in k[len(prefix) :]
    ]
    close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    if close:
        return prefix + close[0]
    lowered = leaf.lower().replace("-", "_")
    for cand in siblings:
        if "".join(w[0] for w in cand.split("_") if w) == lowered:
            return prefix + cand

    def in_order(small: str, big: str) -> bool:
        it = iter(big)
        return all(ch in it for ch in small)

    ordered = [c for c in siblings if c[0] == lowered[:1] and in_order(lowered, c)]
    return prefix + min(ordered, key=len) if ordered else None


def did_you_mean(key: str, known: list[str]) -> str:
    """`` Did you mean 'x'?`` or ``""``."""
    hint = suggest(key, known)
    return f" Did you mean '{hint}'?" if hint else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_INPUT_REPR else text[: _MAX_INPUT_REPR - 3] + "..."


def explain(
    exc: ValidationError,
    source: str,
    known: list[str],
    *,
    what: str = "job configuration",
) -> str:
    """One line per error: the key, what is wrong, the value given, a "Did you mean"."""
    lines = [f"{source}: the {what} is invalid:"]
    for err in exc.errors():
        path = list(err["loc"])
        loc = ".".join(str(p) for p in path if not isinstance(p, int))
        idx = next((p for p in path if isinstance(p, int)), None)
        where = loc + (f" (entry {idx + 1})" if idx is not None else "")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"  key '{where}' is not a known key.{did_you_mean(loc, known)}")
        elif err["type"] == "missing":
            lines.append(f"  key '{where}' is required")
        elif err["type"] == "enum":
            expected = err.get("ctx", {}).get("expected", "")
            lines.append(f"  key '{where}': {err['input']!r} is not one of {expected}")
        elif not loc:
            lines.append(f"  {msg}")
        else:
            lines.append(f"  key '{where}': {msg} (got {_short(err.get('input'))})")
    return "\n".join(lines)

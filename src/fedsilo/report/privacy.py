"""The report's privacy section: epsilon spent per round, described for the job's DP level.

Present only when a round recorded a privacy spend (``history[i].privacy.epsilon``, see
:mod:`fedsilo.results`); an empty string otherwise, so non-private jobs look as before.

* **Record level** (DP-SGD inside every party): each party accounts its own spend; the
  section gives the maximum over parties, each party's curve and a table of each party's
  spend, noise multiplier, clip norm, steps and budget.
* **Client level** (DP-FedAvg, :mod:`fedsilo.privacy.dp_fedavg`): one epsilon for the whole
  federation, accounted by the coordinator (not in the parties' ledgers); the section says
  what it protects (one party's whole data), the neighbouring relation the accountant used,
  the noise multiplier, the clip norm (fixed or adaptive), the selection and where the noise
  was added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedsilo.report._fmt import MISSING, esc
from fedsilo.report._model import as_list, as_mapping, as_number
from fedsilo.report.plots import GLOBAL_COLOR, label_text, palette, to_data_uri


def _series(
    metrics: Mapping[str, Any],
) -> tuple[list[int], list[float], dict[str, list[tuple[int, float]]]]:
    rounds: list[int] = []
    overall: list[float] = []
    parties: dict[str, list[tuple[int, float]]] = {}
    for i, raw in enumerate(as_list(metrics.get("history"))):
        row = as_mapping(raw)
        privacy = as_mapping(row.get("privacy"))
        eps = as_number(privacy.get("epsilon"))
        if eps is None:
            continue
        rnd = int(as_number(row.get("round")) or i + 1)
        rounds.append(rnd)
        overall.append(eps)
        for name, spend in as_mapping(privacy.get("parties")).items():
            value = as_number(as_mapping(spend).get("epsilon"))
            if value is not None:
                parties.setdefault(str(name), []).append((rnd, value))
    return rounds, overall, parties


def _client_level(metrics: Mapping[str, Any]) -> bool:
    final = as_mapping(as_mapping(metrics.get("final")).get("privacy"))
    return final.get("level") == "client"


def epsilon_plot(metrics: Mapping[str, Any]) -> str | None:
    """Epsilon spent after each round: record level, the maximum over parties (bold) and each
    party; client level, the federation's one epsilon."""
    rounds, overall, parties = _series(metrics)
    if not rounds:
        return None
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.add_subplot()
    for colour, (name, points) in zip(palette(len(parties)), sorted(parties.items()), strict=True):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, color=colour, alpha=0.6, linewidth=1.2, label=label_text(name))
    label = "federation (client level)" if _client_level(metrics) else "max over parties"
    ax.plot(rounds, overall, color=GLOBAL_COLOR, linewidth=2.4, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("epsilon spent")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if parties and len(parties) <= 12:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return to_data_uri(fig)


def _g(value: Any) -> str:
    """A number to 4 significant digits, as every figure in the report (``—`` if missing)."""
    number = as_number(value)
    return MISSING if number is None else f"{number:.4g}"


def _eps(value: Any) -> str:
    eps = as_number(value)
    return esc(f"{eps:.4g}" if eps is not None else MISSING)


def _figure(uri: str, caption: str) -> str:
    return (
        f"<figure><img src='{uri}' alt='Epsilon spent per round'>"
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _record_level(final: Mapping[str, Any], uri: str) -> tuple[str, str]:
    """(the opening paragraph, the figure and per-party table) for record-level DP."""
    level = esc(final.get("level", "record"))
    head = (
        f"<p>{level}-level differential privacy: epsilon "
        f"<strong>{_eps(final.get('epsilon'))}</strong> at delta "
        f"{esc(final.get('delta'))} after the last round (maximum over parties; each party "
        f"accounts its own spend with {esc(final.get('accounting', 'rdp'))}).</p>"
    )
    rows = []
    for name, spend in sorted(as_mapping(final.get("parties")).items()):
        s = as_mapping(spend)
        cells = [
            esc(name),
            esc(f"{as_number(s.get('epsilon')) or 0:.4g}"),
            esc(_g(s.get("noise_multiplier"))),
            esc(_g(s.get("max_grad_norm"))),
            esc(s.get("steps")),
            esc(_g(s.get("max_epsilon")) if s.get("max_epsilon") is not None else "none"),
        ]
        rows.append(
            f"<tr><td class='text'>{cells[0]}</td>"
            + "".join(f"<td>{c}</td>" for c in cells[1:])
            + "</tr>"
        )
    table = (
        "<div class='scroll'><table><thead><tr><th class='text'>party</th><th>epsilon</th>"
        "<th>noise multiplier</th><th>clip norm</th><th>steps</th><th>budget</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    fig = _figure(
        uri,
        "Epsilon spent after each round: maximum over parties (bold) and each party (thin).",
    )
    return head, fig + table


_RELATIONS = {
    "replace-one": (
        "one party's whole data replaced by any other (replace-one; the accountant analyses "
        "the fixed-size selection as sampling without replacement)"
    ),
    "add/remove": (
        "add or remove one party's whole data (add/remove; every party takes part in every round)"
    ),
}
_NOISE = {
    "distributed": (
        "by the parties: each selected party adds its share, N(0, (z C)² / m) for m selected "
        "parties, to its clipped update before secure aggregation; the coordinator unmasks only "
        "the noisy sum"
    ),
    "coordinator": (
        "by the coordinator, to the sum of the parties' clipped updates (the parties trust it "
        "to add the noise)"
    ),
}


def _clipping(metrics: Mapping[str, Any], final: Mapping[str, Any]) -> str:
    """The clip norm C: fixed, or adaptive from its first round to the next one's."""
    history = [as_mapping(as_mapping(r).get("privacy")) for r in as_list(metrics.get("history"))]
    used = [h for h in history if h.get("clip_norm") is not None]
    adaptive = final.get("adaptive_clipping")
    if adaptive is None:  # metrics written before the record said so: the job config does
        job = as_mapping(as_mapping(metrics.get("job")).get("config"))
        adaptive = as_mapping(as_mapping(job.get("privacy")).get("client_dp")).get(
            "adaptive_clipping"
        )
    if adaptive is False:
        return f"{_g(final.get('clip_norm'))} (fixed)"
    if adaptive is not True or not used:
        return f"{_g(final.get('clip_norm'))} in the last round"
    return (
        f"adaptive (quantile tracking, Andrew et al. 2021): {_g(used[0].get('clip_norm'))} in "
        f"the first round, {_g(final.get('clip_norm'))} in the last "
        f"(next: {_g(final.get('next_clip_norm'))})"
    )


def _releases(final: Mapping[str, Any]) -> str:
    """``10 at z 0.7``: the noisy releases accounted, by the noise multiplier in the sum."""
    parts = []
    for item in as_list(final.get("releases")):
        pair = as_list(item)
        if len(pair) == 2 and as_number(pair[1]) is not None:
            parts.append(f"{int(as_number(pair[1]) or 0)} at z {_g(pair[0])}")
    return ", ".join(parts) or MISSING


def _client_level_body(
    metrics: Mapping[str, Any], final: Mapping[str, Any], uri: str
) -> tuple[str, str]:
    """(the opening paragraph, the figure and mechanism table) for client-level DP."""
    accounting = esc(final.get("accounting", "rdp"))
    head = (
        "<p>client-level differential privacy (DP-FedAvg): epsilon "
        f"<strong>{_eps(final.get('epsilon'))}</strong> at delta {esc(final.get('delta'))} "
        "after the last round, one figure for the whole federation. It bounds what the "
        "released models reveal about any one party's whole data. The coordinator accounts "
        f"it ({accounting}) from the noise in each released sum; it is not in the parties' "
        "privacy ledgers.</p>"
    )
    relation = str(final.get("relation", ""))
    sample_rate = as_number(final.get("sample_rate"))
    selection = str(final.get("selection") or MISSING)
    if sample_rate is not None:
        selection += f"; sample rate {sample_rate:.4g}"
    noise = str(final.get("noise", ""))
    rows = [
        ("neighbouring datasets", _RELATIONS.get(relation, relation or MISSING)),
        ("noise multiplier z", _g(final.get("noise_multiplier"))),
        ("clip norm C", _clipping(metrics, final)),
        ("parties per round", selection),
        ("noise added", _NOISE.get(noise, noise or MISSING)),
        ("releases accounted", _releases(final)),
    ]
    table = (
        "<div class='scroll'><table><thead><tr><th class='text'>mechanism</th>"
        "<th class='text'>this job</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td class='text'>{esc(k)}</td><td class='text'>{esc(v)}</td></tr>"
            for k, v in rows
        )
        + "</tbody></table></div>"
    )
    fig = _figure(
        uri,
        "Epsilon spent after each round, accounted by the coordinator for the whole "
        "federation (client level).",
    )
    return head, fig + table


def privacy_section(metrics: Mapping[str, Any]) -> str:
    """HTML for the privacy section, or ``""`` when the job ran without DP."""
    final = as_mapping(as_mapping(metrics.get("final")).get("privacy"))
    uri = epsilon_plot(metrics)
    if uri is None:
        return ""
    if _client_level(metrics):
        head, body = _client_level_body(metrics, final, uri)
    else:
        head, body = _record_level(final, uri)
    if metrics.get("dp_noise") == "reproducible":
        head += (
            "<p><strong>Reproducible noise (simulation only):</strong> the DP noise and "
            "sampling were seeded from the job seed (<code>[privacy] reproducible_noise</code>), "
            "so anyone who knows the seed can remove the noise. Deployed parties refuse this "
            "setting.</p>"
        )
    return f"<section id='privacy'><h2>Privacy</h2>{head}{body}</section>"

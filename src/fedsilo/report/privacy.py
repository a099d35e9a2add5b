"""The report's privacy section: epsilon spent per round (overall and per party).

Present only when a round recorded a privacy spend (``history[i].privacy.epsilon``, see
:mod:`fedsilo.results`); an empty string otherwise, so non-private jobs look as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedsilo.report._fmt import esc
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


def epsilon_plot(metrics: Mapping[str, Any]) -> str | None:
    """Epsilon spent after each round: the maximum over parties (bold) and each party."""
    rounds, overall, parties = _series(metrics)
    if not rounds:
        return None
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.add_subplot()
    for colour, (name, points) in zip(palette(len(parties)), sorted(parties.items()), strict=True):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, color=colour, alpha=0.6, linewidth=1.2, label=label_text(name))
    ax.plot(rounds, overall, color=GLOBAL_COLOR, linewidth=2.4, label="max over parties")
    ax.set_xlabel("round")
    ax.set_ylabel("epsilon spent")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(parties) <= 12:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return to_data_uri(fig)


def privacy_section(metrics: Mapping[str, Any]) -> str:
    """HTML for the privacy section, or ``""`` when the job ran without DP."""
    final = as_mapping(as_mapping(metrics.get("final")).get("privacy"))
    uri = epsilon_plot(metrics)
    if uri is None:
        return ""
    eps, delta = as_number(final.get("epsilon")), final.get("delta")
    level = esc(final.get("level", "record"))
    head = (
        f"<p>{level}-level differential privacy: epsilon "
        f"<strong>{esc(f'{eps:.4g}' if eps is not None else '—')}</strong> at delta "
        f"{esc(delta)} after the last round (maximum over parties; each party accounts its "
        f"own spend with {esc(final.get('accounting', 'rdp'))}).</p>"
    )
    if metrics.get("dp_noise") == "reproducible":
        head += (
            "<p><strong>Reproducible noise (simulation only):</strong> the DP noise and "
            "sampling were seeded from the job seed (<code>[privacy] reproducible_noise</code>), "
            "so anyone who knows the seed can remove the noise. Deployed parties refuse this "
            "setting.</p>"
        )
    rows = []
    for name, spend in sorted(as_mapping(final.get("parties")).items()):
        s = as_mapping(spend)
        cells = [
            esc(name),
            esc(f"{as_number(s.get('epsilon')) or 0:.4g}"),
            esc(s.get("noise_multiplier")),
            esc(s.get("max_grad_norm")),
            esc(s.get("steps")),
            esc(s.get("max_epsilon") if s.get("max_epsilon") is not None else "none"),
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
    fig = (
        f"<figure><img src='{uri}' alt='Epsilon spent per round'>"
        "<figcaption>Epsilon spent after each round: maximum over parties (bold) and each "
        "party (thin).</figcaption></figure>"
    )
    return f"<section id='privacy'><h2>Privacy</h2>{head}{fig}{table}</section>"

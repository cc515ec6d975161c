"""Thresholds calibrated on the user's own labels, per model and modality pair (`lychee eval --calibrate`).

For each model and each modality pair of a labelled set (`text->image`, `image->page`, ...), on the labelled pairs'
own scores:

- **show_first**: the lowest score t such that the pairs scored >= t are relevant at least at the target precision
  (default 0.9): "show it first";
- **filter_below**: the highest score t such that at most the target share of the relevant pairs (default 5 %)
  score below t: "safe to filter out" below it;

each with the number of labelled pairs and relevant ones behind it, and `null` with a reason where there are too
few (fewer than `MIN_PAIRS` pairs or `MIN_RELEVANT` relevant ones). A pair is relevant when its grade is above 0.

The file (JSON): `{"models": {"<model name as the API reports it>": {"<query kind>-><document kind>": {"show_first",
"filter_below", "pairs", "relevant"}, ...}}, "model_details": {"<name>": {"model", "precision"}}, "source": {...},
"targets": {...}}`: it names each model and the precision it ran in, and the data it came from, so that it is never
applied to another model silently. Torch-free.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

from .contract import DEFAULT_BANDS, Bands, Item, Part, WordedError

MIN_PAIRS = 20
MIN_RELEVANT = 5
DEFAULT_PRECISION = 0.9
DEFAULT_MISS = 0.05
FORMAT = "lychee-calibration/1"


def kind_of(item: Item, part: Part | None = None) -> str:
    """An item's modality as the calibration file names it: text, image, text+image, page, chunk, clip."""
    if part is not None:
        return {"page": "page", "chunk": "chunk", "segment": "clip"}[part.kind]
    if item.pages is not None:
        return "page"
    if item.video is not None:
        return "clip"
    if item.images:
        return "text+image" if item.text else "image"
    return "text"


def pair_kind(query: Item, item: Item, part: Part | None = None) -> str:
    """A query-document pair's modality pair as the file names it: "text->image", "image->page", ..."""
    return f"{kind_of(query)}->{kind_of(item, part)}"


def show_first(scores: Sequence[float], relevant: Sequence[bool], precision: float) -> float | None:
    """The lowest of the pairs' scores t whose pairs scored >= t are relevant at least at `precision` (None: none)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    best, hits = None, 0
    for count, i in enumerate(order, start=1):
        hits += relevant[i]
        # Only where the next pair scores lower: pairs of equal score are taken together.
        if count == len(order) or scores[order[count]] < scores[i]:
            if hits / count >= precision:
                best = scores[i]
    return best


def filter_below(scores: Sequence[float], relevant: Sequence[bool], miss: float) -> float | None:
    """The highest score t such that at most `miss` of the relevant pairs score below t (None: no relevant pair)."""
    kept = sorted(score for score, good in zip(scores, relevant) if good)
    if not kept:
        return None
    allowed = math.floor(miss * len(kept) + 1e-9)  # relevant pairs that may fall below
    return kept[allowed]


def fit(
    scores: Sequence[float], relevant: Sequence[bool], precision: float = DEFAULT_PRECISION, miss: float = DEFAULT_MISS
) -> dict:
    """One model's thresholds on one modality pair's labelled pairs (see the module's docstring)."""
    pairs, good = len(scores), sum(1 for flag in relevant if flag)
    entry: dict[str, Any] = {"show_first": None, "filter_below": None, "pairs": pairs, "relevant": good}
    if pairs < MIN_PAIRS or good < MIN_RELEVANT:
        entry["note"] = (
            f"too few labels: {pairs} pairs, {good} relevant (calibrating needs {MIN_PAIRS} pairs and {MIN_RELEVANT} relevant)"
        )
        return entry
    entry["show_first"] = show_first(scores, relevant, precision)
    entry["filter_below"] = filter_below(scores, relevant, miss)
    if entry["show_first"] is None:
        entry["note"] = f"no score has the pairs above it relevant at {precision:.0%}"
    return entry


def by_pair(labelled: Iterable[tuple[str, str, float, int]]) -> dict[tuple[str, str], tuple[list, list]]:
    """(model, modality pair) -> (scores, relevant) of labelled pairs (model, modality pair, score, grade)."""
    grouped: dict[tuple[str, str], tuple[list, list]] = {}
    for model, kind, score, grade in labelled:
        scores, relevant = grouped.setdefault((model, kind), ([], []))
        scores.append(score)
        relevant.append(grade > 0)
    return grouped


def calibrate(
    labelled: Iterable[tuple[str, str, float, int]],
    *,
    precision: float = DEFAULT_PRECISION,
    miss: float = DEFAULT_MISS,
    models: dict[str, dict] | None = None,
    source: dict | None = None,
) -> dict:
    """The calibration file's content from (model, modality pair, score, grade) of every labelled pair.
    `models`: what each model is (its precision), by name; `source`: the data it came from."""
    grouped: dict[str, dict[str, tuple[list, list]]] = {}
    for (model, kind), pairs in by_pair(labelled).items():
        grouped.setdefault(model, {})[kind] = pairs
    return {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "targets": {"precision": precision, "relevant_missed": miss, "min_pairs": MIN_PAIRS, "min_relevant": MIN_RELEVANT},
        "source": source or {},
        # What each model is (its checkpoint and the precision it ran in), apart from its thresholds.
        "model_details": {model: (models or {}).get(model, {}) for model in grouped},
        "models": {
            model: {kind: fit(scores, relevant, precision, miss) for kind, (scores, relevant) in sorted(kinds.items())}
            for model, kinds in grouped.items()
        },
    }


def labelled_of(report: dict) -> list[tuple[str, str, float, int]]:
    """(model, modality pair, score, grade) of every labelled pair of an evaluation report (`evaluation.evaluate`:
    each query's scores, grades and modalities, for each model)."""
    return [
        (name, kind, score, grade)
        for name, model in report["models"].items()
        for query in model["per_query"]
        for kind, score, grade in zip(query["kinds"], query["scores"], query["labels"])
    ]


def from_report(report: dict, *, precision: float = DEFAULT_PRECISION, miss: float = DEFAULT_MISS, details=None) -> dict:
    """The calibration of an evaluation report; `details`: each model's {"model", "precision"} by name."""
    source = {key: report[key] for key in ("data", "queries") if key in report}
    return calibrate(labelled_of(report), precision=precision, miss=miss, models=details, source=source)


def curves(scores: Sequence[float], relevant: Sequence[bool], points: int = 200) -> list[tuple[float, float, float]]:
    """(t, precision, recall) of "show the pairs scored >= t" at each distinct score t of the labelled pairs,
    highest first (at most `points` of them, evenly by rank, the lowest kept): the curve a cut-off is chosen on."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    good = sum(1 for flag in relevant if flag)
    found, hits = [], 0
    for count, i in enumerate(order, start=1):
        hits += bool(relevant[i])
        if count == len(order) or scores[order[count]] < scores[i]:  # equal scores are taken together
            found.append((scores[i], hits / count, hits / good if good else 0.0))
    step = max(1, math.ceil(len(found) / points))
    return found[::step] + ([found[-1]] if found and (len(found) - 1) % step else [])


def summary(calibration: dict) -> str:
    """The thresholds as a table, for the terminal."""
    lines = ["| model | pair | pairs | relevant | show first at | filter below |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for model, kinds in calibration["models"].items():
        for kind, entry in kinds.items():
            shown = [f"{entry[key]:.4f}" if entry[key] is not None else "—" for key in ("show_first", "filter_below")]
            lines.append(f"| {model} | {kind} | {entry['pairs']} | {entry['relevant']} | {shown[0]} | {shown[1]} |")
    notes = [
        f"{model} {kind}: {entry['note']}"
        for model, kinds in calibration["models"].items()
        for kind, entry in kinds.items()
        if "note" in entry
    ]
    return "\n".join(lines + ([""] + notes if notes else []))


# -- using a calibration: a server started with --calibration FILE ---------------------------------------------------

BANDS = ("relevant", "partly")  # min_score's words: at or above show_first, at or above filter_below


class CalibrationError(WordedError, ValueError):
    """A calibration file that cannot be used (unreadable, or for models this server does not serve)."""

    code = "calibration_file"


@dataclass(frozen=True)
class Calibration:
    """The thresholds of one or several calibration files: for each model, each modality pair's entry."""

    models: dict = field(default_factory=dict)  # model name -> "q->d" -> {"show_first", "filter_below", "pairs", ...}
    details: dict = field(default_factory=dict)  # model name -> {"model", "precision"}
    files: tuple = ()

    @classmethod
    def load(cls, paths: Sequence[str]) -> "Calibration":
        """The files' thresholds (a later file's entry for a model replaces an earlier one's)."""
        models: dict = {}
        details: dict = {}
        for path in paths:
            try:
                with open(path, encoding="utf-8") as handle:
                    found = json.load(handle)
            except (OSError, ValueError) as error:
                raise CalibrationError(f"cannot read the calibration file {path}: {error}") from None
            if not isinstance(found, dict) or found.get("format") != FORMAT or not isinstance(found.get("models"), dict):
                raise CalibrationError(f"{path} is not a calibration file (lychee eval --calibrate writes one)")
            models.update(found["models"])
            details.update(found.get("model_details") or {})
        return cls(models, details, tuple(str(path) for path in paths))

    def check(self, served: dict[str, str]) -> list[str]:
        """Refuse a calibration for no model this server serves (`served`: name -> precision); the warnings for a
        model calibrated in another precision."""
        unknown = sorted(set(self.models) - set(served))
        if unknown:
            raise CalibrationError(
                f"the calibration in {', '.join(self.files)} is for {', '.join(unknown)}; this server serves "
                f"{', '.join(served)} (calibrate each served model with lychee eval --calibrate, by the name the API reports)"
            )
        return [
            f"{name} was calibrated in {self.details[name]['precision']} and is served in {precision}: its thresholds may be off"
            for name, precision in served.items()
            if name in self.details and self.details[name].get("precision") not in (None, precision)
        ]

    def bands(self, model: str, kind: str) -> Bands:
        """The thresholds that read a score of `model` for modality pair `kind` ("text->image", ...): the
        calibrated ones where the file has them (a `null` one, too few labels, keeps its default), else the
        defaults; `pairs` says how many labelled pairs they were fitted on (None: not calibrated)."""
        entry = self.models.get(model, {}).get(kind) or {}
        show, below = entry.get("show_first"), entry.get("filter_below")
        if show is None and below is None:
            return replace(DEFAULT_BANDS, kind=kind)
        show = DEFAULT_BANDS.show_first if show is None else float(show)
        below = DEFAULT_BANDS.filter_below if below is None else float(below)
        # Where "safe to filter out" lies above "show it first" (noisy labels), green wins and nothing is yellow.
        return Bands(show, below, int(entry.get("pairs", 0)), kind)

    def threshold(self, model: str, kind: str, band: str) -> tuple[float, int | None]:
        """The score a row of `model` and modality pair `kind` needs for `band` ("relevant": show it first;
        "partly": not safe to filter out), and the labelled pairs it was calibrated on (None: the default band)."""
        bands = self.bands(model, kind)
        return bands.threshold(band), bands.pairs


def min_score_of(value: Any) -> float | str | None:
    """A caller's `min_score`: a number (0..1), "relevant" or "partly" (the calibrated bands), or None."""
    from .errors import InputError

    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise InputError("min_score", "min_score", value=str(value))
        return None
    if isinstance(value, str) and value in BANDS:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError("min_score", "min_score", value=str(value)[:40]) from None
    if not 0.0 <= number <= 1.0:
        raise InputError("min_score", "min_score", value=str(value)[:40])
    return number

"""What a bundle's model is for: which DICOM images it may answer for, and whom it was trained on.

Recorded at export (`bundle.json` key `intended_use`), shown by `bundle inspect` and the model
card, overridable at `watch`/`classify`. The tags stage (`scope/tags.py`) enforces it on each
DICOM header. Bundles exported before the key existed get the defaults: CR/DX frontal chest
radiographs, population not stated (no age rule).

Synonyms: a few values that mean the same thing as an accepted one are accepted with it, so
the manifest and the options stay short and say what the standard says:
- Modality `DR` with `DX`: not a DICOM defined term, but some digital radiography consoles
  write it for DX; edgecxr accepted it before intended use existed.
- BodyPartExamined `THORAX` with `CHEST`: both are DICOM defined terms (PS3.16 CID 4031:
  SCT 51185008 "Chest", SCT 43799004 "Thorax") for the same region, and consoles set up in
  German or Dutch write THORAX on human chest radiographs. A veterinary thorax is refused by
  the species rule, not by this one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from edgecxr.core.defaults import DEFAULT_MODALITIES, with_synonyms
from edgecxr.core.errors import EdgecxrError

DEFAULT_VIEWS = ("PA", "AP")
DEFAULT_BODY_PARTS = ("CHEST",)
BODY_PART_SYNONYMS = {"THORAX": "CHEST"}
AGE_ACTIONS = ("flag", "refuse")
MAX_AGE_YEARS = 150.0  # above this an age tag is a typing error, not an age


@dataclass(frozen=True)
class IntendedUse:
    """The images a model answers for. `age_years` (low, high) in completed years, inclusive:
    1-5 admits a child from the first birthday until the sixth; None when not known."""

    modalities: tuple[str, ...] = DEFAULT_MODALITIES
    views: tuple[str, ...] = DEFAULT_VIEWS
    body_parts: tuple[str, ...] = DEFAULT_BODY_PARTS
    age_years: tuple[float, float] | None = None
    population: str = ""  # in words, e.g. "children aged 1-5 (Kermany paediatric set)"
    refuse_age_outside: bool = False  # default: an age outside the population is flagged, not refused

    def accepted_modalities(self) -> tuple[str, ...]:
        """The modalities with their synonyms (DX brings DR), for the decoder's legacy modality check."""
        return with_synonyms(self.modalities)

    def age_inside(self, years: float) -> bool:
        """Whether an age (fractional years) lies in the population; True when no range is set."""
        if self.age_years is None:
            return True
        low, high = self.age_years
        return low <= years < high + 1  # ages are stated in completed years: 5 covers 5 years 11 months

    def to_manifest(self) -> dict:
        return {
            "modalities": list(self.modalities),
            "views": list(self.views),
            "body_parts": list(self.body_parts),
            "population": {"age_years": None if self.age_years is None else [_num(a) for a in self.age_years],
                           "description": self.population},
            "age_outside_population": "refuse" if self.refuse_age_outside else "flag",
        }

    @classmethod
    def from_manifest(cls, manifest: dict | None) -> IntendedUse:
        """From a bundle's manifest (the whole bundle.json); the defaults when it has no `intended_use`."""
        record = (manifest or {}).get("intended_use")
        if record is None:
            return cls()
        if not isinstance(record, dict):
            raise _bad(f"intended_use is {type(record).__name__}, not an object")
        population = record.get("population") or {}
        if not isinstance(population, dict):
            raise _bad("intended_use.population is not an object")
        action = record.get("age_outside_population", "flag")
        if action not in AGE_ACTIONS:
            raise _bad(f"intended_use.age_outside_population is {action!r}, not flag or refuse")
        return cls(
            modalities=_codes(record.get("modalities", DEFAULT_MODALITIES), "modalities"),
            views=_codes(record.get("views", DEFAULT_VIEWS), "views"),
            body_parts=_codes(record.get("body_parts", DEFAULT_BODY_PARTS), "body_parts"),
            age_years=_age_range(population.get("age_years")),
            population=str(population.get("description") or ""),
            refuse_age_outside=action == "refuse",
        )

    def with_overrides(self, *, modalities: str | Iterable[str] | None = None,
                       views: str | Iterable[str] | None = None,
                       body_parts: str | Iterable[str] | None = None,
                       population_age: str | tuple[float, float] | None = None,
                       population_text: str | None = None,
                       refuse_age_outside: bool | None = None) -> IntendedUse:
        """A copy with what the user gave on the command line; None keeps the bundle's value.
        Lists are comma-separated text or sequences; `population_age` is "1-5", or "none" to drop it."""
        changes: dict = {}
        for key, value in (("modalities", modalities), ("views", views), ("body_parts", body_parts)):
            if value is not None:
                changes[key] = _codes(value, key.replace("_", "-"))
        if population_age is not None:
            changes["age_years"] = parse_age_range(population_age)
        if population_text is not None:
            changes["population"] = population_text.strip()
        if refuse_age_outside is not None:
            changes["refuse_age_outside"] = refuse_age_outside
        return replace(self, **changes)

    def describe(self) -> str:
        """One line for `bundle inspect` and the model card."""
        views = "/".join(self.views) or "any view"
        text = (f"{'/'.join(self.modalities)} radiographs of the {'/'.join(self.body_parts).lower()}, "
                f"{views} views; population: {self.describe_population()}")
        if self.age_years is not None:
            text += "; an age outside it is " + ("refused" if self.refuse_age_outside else "flagged on the result")
        return text

    def describe_population(self) -> str:
        ages = None if self.age_years is None else f"{_num(self.age_years[0])}-{_num(self.age_years[1])} years"
        if self.population and ages:
            return self.population if ages.split()[0] in self.population else f"{self.population}, {ages}"
        return self.population or (f"aged {ages}" if ages else "not stated")


def resolve(manifest: dict | None, **overrides) -> IntendedUse:
    """The intended use a runtime applies: the bundle's, with the command line's overrides
    (keywords of `IntendedUse.with_overrides`; None values are ignored)."""
    return IntendedUse.from_manifest(manifest).with_overrides(**overrides)


def parse_age_range(value: str | tuple[float, float] | list | None) -> tuple[float, float] | None:
    """"1-5" -> (1.0, 5.0); "none" or "" -> None. Refuses, with the form to use, anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "unknown"):
            return None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)", text)
        if not match:
            raise EdgecxrError(f"population age {value!r} is not a range in years",
                               fix="give it as LOW-HIGH in years, e.g. --population-age 1-5, or none")
        value = (float(match.group(1)), float(match.group(2)))
    return _age_range(value)


def _age_range(value) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise _bad(f"population age {value!r} is not two numbers") from exc
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low or high > MAX_AGE_YEARS:
        raise EdgecxrError(f"population age {_num(low)}-{_num(high)} is not an age range",
                           fix=f"give LOW-HIGH in years with 0 <= LOW <= HIGH <= {MAX_AGE_YEARS:.0f}")
    return (low, high)


def _codes(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    codes = tuple(dict.fromkeys(str(v).strip().upper() for v in items if str(v).strip()))
    if not codes:
        raise EdgecxrError(f"no {what} given", fix=f"name at least one, comma-separated (e.g. {_EXAMPLES[what]})")
    return codes


_EXAMPLES = {"modalities": "CR,DX", "views": "PA,AP", "body_parts": "CHEST", "body-parts": "CHEST"}


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _bad(what: str) -> EdgecxrError:
    return EdgecxrError(f"the bundle's {what}", path="bundle.json",
                        fix="re-export the bundle, or correct intended_use in bundle.json")

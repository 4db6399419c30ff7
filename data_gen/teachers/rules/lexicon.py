"""The finance cue lexicon (``finance_lexicon.yaml``) compiled into regexes: metric + direction cues, polarity
cues with their weights, negators, clause markers, risk severity, company suffixes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
LEXICON_PATH = HERE / "finance_lexicon.yaml"
NEGATION_WINDOW_WORDS = 3
NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?"
UNIT = r"(?:\s*(?:%|pct|percent|mn|mln|m|million|bn|billion|b|thousand|k|cents?|bp|basis points)\b)?"
SUBJECT_VERBS = (
    r"said|says|reported|reports|posted|posts|announced|announces|will|has|have|had|is|was|are|were|"
    r"plans|expects|agreed|signed|won|wins|raised|raises|cut|cuts|lowered|shares|stock|sees|saw|"
    r"completed|launched|opened|closed|acquired|sold|bought|received|delivered|rose|fell|gained|jumped"
)
MONEY = rf"(?:(?:eur|usd|gbp|sek|nok|dkk|jpy|chf|cad|aud|[$€£¥])\s*)?({NUMBER}){UNIT}"
SCALE = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mn": 1e6,
    "mln": 1e6,
    "million": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
}


def phrase_regex(phrases: list[str]) -> re.Pattern[str]:
    """One regex matching any phrase on word boundaries, longest first."""
    ordered = sorted({p.lower() for p in phrases}, key=len, reverse=True)
    return re.compile(r"(?<![\w$])(" + "|".join(re.escape(p) for p in ordered) + r")(?![\w])")


def amount(match: re.Match[str]) -> float:
    """The value of a MONEY match, scaled by its unit (EUR 1.2 bn > EUR 900 mn)."""
    number = float(match.group(1).replace(",", ""))
    unit = re.search(r"[a-z]+\s*$", match.group(0).lower())
    return number * SCALE.get(unit.group(0).strip(), 1.0) if unit else number


@dataclass
class Cue:
    start: int
    end: int
    phrase: str
    polarity: int  # +1 good for investors, -1 bad
    weight: float
    note: str


class Lexicon:
    """The compiled cue lexicon."""

    def __init__(self, path: Path = LEXICON_PATH) -> None:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.negators = phrase_regex(data["negators"])
        self.main_markers = phrase_regex(data["main_clause_markers"])
        self.concession_markers = phrase_regex(data["concession_markers"])
        self.direction_of = {w: d for d, words in data["directions"].items() for w in words}
        self.directions = phrase_regex(list(self.direction_of))
        self.metric_of: dict[str, str] = {}
        self.metrics: dict[str, dict[str, Any]] = data["metrics"]
        for name, spec in self.metrics.items():
            for word in spec["words"]:
                self.metric_of.setdefault(word, name)
        self.metric_words = phrase_regex(list(self.metric_of))
        strong, weak = set(data["strong"]), set(data["weak"])

        def weight(word: str) -> float:
            return 2.0 if word in strong else 0.5 if word in weak else 1.0

        self.polarity_of = {w: (1, weight(w)) for w in data["positive"]}
        self.polarity_of.update({w: (-1, weight(w)) for w in data["negative"]})
        self.polarity = phrase_regex(list(self.polarity_of))
        self.risk_high = phrase_regex(data["risk"]["high"])
        self.risk_medium = phrase_regex(data["risk"]["medium"])
        self.suffixes = {s.lower() for s in data["company_suffixes"]}
        self.not_entities = {s.lower() for s in data["not_entities"]}

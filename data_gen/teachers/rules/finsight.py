"""Sentiment, risk and entities of a finance text from the lexicon's cues, with a ``<thinking>`` block that says
which cues fired and why they matter (finsight-shaped tasks)."""

from __future__ import annotations

import json
import re

from data_gen.errors import ConfigError
from data_gen.tasks.task import Task
from data_gen.teachers.rules.entities import entity_sentiment, find_entities
from data_gen.teachers.rules.lexicon import (
    MONEY,
    NEGATION_WINDOW_WORDS,
    Cue,
    Lexicon,
    amount,
)


class FinsightRules:
    """Sentiment, risk and entities from cues; returns the reply text with a ``<thinking>`` block."""

    def __init__(self, task: Task, lexicon: Lexicon | None = None) -> None:
        self.task = task
        self.lex = lexicon or Lexicon()
        sentiments = set(task.labels)
        risks = set(task.enum("risk_level")) if "risk_level" in task.field_names else set()
        if (
            not {"positive", "negative", "neutral"} <= sentiments
            or not {"High", "Medium", "Low"} <= risks
            or "entities" not in task.field_names
        ):
            raise ConfigError(
                f"the rules teacher cannot answer task {task.name!r}: it needs the finsight fields "
                "(entities, sentiment positive/negative/neutral, risk_level High/Medium/Low)"
            )

    # ---------------- sentiment ----------------
    def clause_weights(self, low: str) -> list[float]:
        """Per-character weight: a concession clause counts half, the clause after 'but' / 'however' 1.5x."""
        weights = [1.0] * len(low)
        for m in self.lex.concession_markers.finditer(low):
            end = next((i for i in range(m.end(), len(low)) if low[i] in ",;"), len(low))
            for i in range(m.start(), end):
                weights[i] = 0.5
            if end < len(low) and not low[: m.start()].strip():  # "Despite X, Y": Y is the main point
                for i in range(end, len(low)):
                    weights[i] = max(weights[i], 1.25)
        for m in self.lex.main_markers.finditer(low):
            for i in range(m.start(), len(low)):
                weights[i] = 1.5
        return weights

    def negated(self, low: str, start: int) -> str | None:
        """The negator among the few words before ``start``, if any."""
        window = " ".join(low[:start].split()[-NEGATION_WINDOW_WORDS:])
        found = self.lex.negators.findall(window)
        return found[-1] if found else None

    def metric_cues(self, low: str) -> list[Cue]:
        """Direction words attached to a metric ('net sales decreased', 'cut costs', 'a 10% rise in orders'), and
        price moves ('Nvidia +3.7%', 'shares climbed 5%')."""
        metrics = [(m.start(), m.end(), m.group(0)) for m in self.lex.metric_words.finditer(low)]
        cues: list[Cue] = []
        used_metrics: set[int] = set()
        for d in self.lex.directions.finditer(low):
            word = d.group(0)
            direction = self.lex.direction_of[word]
            after = [
                (s, e, w)
                for s, e, w in metrics
                if s >= d.end()
                and s - d.end() <= 30
                and re.fullmatch(
                    r"\s*(?:(?:in|of|its|their|the|a|an|our|his|her|by|for|to|at)\s+)*"
                    r"(?:[\w-]+\s+){0,2}?",
                    low[d.end() : s],
                )
            ]
            before = [
                (s, e, w)
                for s, e, w in metrics
                if e <= d.start()
                and len(low[e : d.start()].split()) <= 5
                and not re.search(r"[;.,]|\bbut\b|\bwhile\b|\band\b", low[e : d.start()])
            ]
            chosen = after[0] if after else (before[-1] if before else None)
            if chosen is not None and chosen[0] in used_metrics:
                continue
            if chosen is None:
                cue = self.price_move(low, d, direction)
                if cue:
                    cues.append(cue)
                continue
            used_metrics.add(chosen[0])
            metric = self.lex.metric_of[chosen[2]]
            spec = self.lex.metrics[metric]
            polarity = 1 if direction == spec["good_when"] else -1
            span = (min(chosen[0], d.start()), max(chosen[1], d.end()))
            note = f"{spec[direction]}"
            numbers = self.change_from_numbers(low[d.end() : d.end() + 60])
            if numbers:
                note += f" ({numbers})"
            negator = self.negated(low, span[0]) or self.negated(low, d.start())  # "not" before either word
            if negator:
                polarity = -polarity
                note += f", but it is negated by '{negator}'"
            phrase = low[span[0] : span[1]] if span[1] - span[0] <= 60 else f"{chosen[2]} ... {word}"
            cues.append(Cue(span[0], span[1], phrase, polarity, float(spec.get("weight", 2.0)), note))
        moves = r"(?<![\w.])([+-])\s?\d+(?:\.\d+)?\s?%|\d+(?:\.\d+)?\s?(?:%|pct|percent)\s+(higher|lower)\b"
        for m in re.finditer(moves, low):  # headline style: "Nvidia +3.7%", "the index was 0.3 pct lower"
            if not any(c.start <= m.start() < c.end or m.start() <= c.start < m.end() for c in cues):
                polarity = 1 if (m.group(1) or m.group(2)) in ("+", "higher") else -1
                cues.append(
                    Cue(
                        m.start(),
                        m.end(),
                        m.group(0),
                        polarity,
                        1.0,
                        "a price move: investors value it " + ("more" if polarity > 0 else "less"),
                    )
                )
        cues.extend(self.numeric_cues(low, metrics, used_metrics, cues))
        return cues

    def price_move(self, low: str, d: re.Match[str], direction: str) -> Cue | None:
        """A direction word with no metric: a move of the price of whatever the text is about. Counts fully
        when a percentage follows ('climbs 3.2%'), half otherwise ('Wheat futures jump')."""
        if d.group(0) in (
            "up",
            "down",
            "record",
            "strong",
            "weak",
            "higher",
            "lower",
            "cut",
            "cuts",
            "raise",
            "raises",
            "raised",
            "added",
            "growth",
            "reduction",
            "below",
            "higher",
            "lower",
            "reducing",
            "lowering",
            "cutting",
            "reduce",
            "reduces",
            "reduced",
            "increase",
            "decrease",
            "narrow",
            "ease",
        ):
            number = re.match(r"\s+(?:by\s+)?[$€£]?[\d.,]*\d", low[d.end() :])
            reason = re.match(r"\s+(?:on|as|after|amid|following|in)\b", low[d.end() :])
            headline = len(low[: d.start()].split()) < 8
            if not (d.group(0) in ("up", "down", "higher", "lower") and (number or (reason and headline))):
                return None
        follows_pct = re.match(
            r"\s+(?:by\s+|nearly\s+|almost\s+|about\s+|over\s+)?(?:[$€£]\s?)?[\d.,]*\d"
            r"\s?(?:%|pct|percent|points|pts|cents|bps)?",
            low[d.end() :],
        )
        headline = len(low[: d.start()].split()) < 8  # "Home Depot falls sharply after ..."
        polarity = 1 if direction == "up" else -1
        negator = self.negated(low, d.start())
        note = "a price move: investors value it " + ("more" if polarity > 0 else "less")
        if negator:
            polarity = -polarity
            note += f", negated by '{negator}'"
        return Cue(
            d.start(),
            d.end() + (follows_pct.end() if follows_pct else 0),
            low[d.start() : d.end() + (follows_pct.end() if follows_pct else 0)],
            polarity,
            1.0 if (follows_pct or headline) else 0.5,
            note,
        )

    @staticmethod
    def change_from_numbers(fragment: str) -> str | None:
        """'to EUR 13.1 mn from EUR 8.7 mn' -> 'from 8.7 mn to 13.1 mn, +51%'."""
        m = re.search(rf"to\s+{MONEY}\s*,?\s*(?:up|down)?\s*from\s+{MONEY}", fragment)
        if m:
            new, old = re.finditer(MONEY, m.group(0))
            return _describe_change(amount(old), amount(new))
        m = re.search(rf"from\s+{MONEY}\s+to\s+{MONEY}", fragment)
        if m:
            old, new = re.finditer(MONEY, m.group(0))
            return _describe_change(amount(old), amount(new))
        return None

    def numeric_cues(
        self, low: str, metrics: list[tuple[int, int, str]], used: set[int], existing: list[Cue]
    ) -> list[Cue]:
        """Comparisons without a direction word: 'profit was EUR 5 mn ( EUR 7 mn )', '... compared with EUR 7 mn'."""
        cues = []
        patterns = (
            rf"{MONEY}\s*\(\s*{MONEY}\s*\)",
            rf"{MONEY}[^.;]{{0,40}}?\b(?:compared|as against|against|versus|vs\.?)\s+(?:with|to)?\s*(?:a|an)?\s*"
            rf"(?:\w+\s+){{0,4}}?{MONEY}",
        )
        for pattern in patterns:
            for m in re.finditer(pattern, low):
                if any(c.start <= m.start() < c.end or m.start() <= c.start < m.end() for c in existing):
                    continue
                before = [(s, e, w) for s, e, w in metrics if e <= m.start() and m.start() - e <= 40 and s not in used]
                if not before:
                    continue
                s, _, word = before[-1]
                amounts = list(re.finditer(MONEY, m.group(0)))
                new, old = amount(amounts[0]), amount(amounts[-1])
                if new == old:
                    continue
                direction = "up" if new > old else "down"
                spec = self.lex.metrics[self.lex.metric_of[word]]
                if "loss" in low[m.start() : m.end()] and self.lex.metric_of[word] != "losses":
                    continue  # "profit of X compared with a loss of Y": handled by lexical swing cues
                used.add(s)
                polarity = 1 if direction == spec["good_when"] else -1
                cues.append(
                    Cue(
                        s,
                        m.end(),
                        f"{word} {m.group(0)}",
                        polarity,
                        2.0,
                        f"{spec[direction]} ({_describe_change(old, new)})",
                    )
                )
        return cues

    def lexical_cues(self, low: str, taken: list[Cue]) -> list[Cue]:
        cues = []
        for m in self.lex.polarity.finditer(low):
            if any(c.start <= m.start() < c.end or m.start() <= c.start < m.end() for c in taken):
                continue
            polarity, weight = self.lex.polarity_of[m.group(0)]
            note = f"{'a positive' if polarity > 0 else 'a negative'} cue"
            negator = self.negated(low, m.start())
            if negator:
                polarity = -polarity
                note += f", negated by '{negator}'"
            cues.append(Cue(m.start(), m.end(), m.group(0), polarity, weight, note))
        return cues

    def sentiment(self, text: str) -> tuple[str, float, list[tuple[Cue, float]]]:
        low = text.lower()
        weights = self.clause_weights(low)
        cues = self.metric_cues(low)
        cues += self.lexical_cues(low, cues)
        weighted = [(c, c.polarity * c.weight * weights[min(c.start, len(weights) - 1)]) for c in cues]
        weighted.sort(key=lambda cw: cw[0].start)
        score = sum(w for _, w in weighted)
        label = "positive" if score >= 1.0 else "negative" if score <= -1.0 else "neutral"
        return label, score, weighted

    # ---------------- risk ----------------
    def risk(self, text: str, label: str) -> tuple[str, str]:
        low = text.lower()
        high = self.lex.risk_high.search(low)
        if high and not self.negated(low, high.start()):
            return "High", f"'{high.group(0)}' signals a threat to solvency or to the business, so the risk is high"
        medium = self.lex.risk_medium.search(low)
        if medium and not self.negated(low, medium.start()):
            return "Medium", f"'{medium.group(0)}' is a material but manageable headwind, so the risk is medium"
        if label == "negative":
            return "Medium", "the news is negative but shows no threat to solvency, so the risk is medium"
        return "Low", "no risk cue fired and the news is not negative, so the risk is low"

    # ---------------- entities ----------------
    def entities(self, text: str) -> list[str]:
        return find_entities(self.lex, text)

    # ---------------- the reply ----------------
    def reply(self, text: str) -> str:
        label, score, weighted = self.sentiment(text)
        risk, risk_reason = self.risk(text, label)
        names = self.entities(text)
        entities = [{"name": n, "sentiment": entity_sentiment(text, n, weighted, label)} for n in names]
        lines = [
            f"The text is about {', '.join(names)}."
            if names
            else "The text names no specific company; it concerns the market or the economy in general."
        ]
        for cue, w in weighted:
            effect = "positive" if w > 0 else "negative"
            lines.append(f"- '{cue.phrase}': {cue.note} -> {effect} ({w:+.1f}).")
        if weighted:
            lines.append(
                f"The cues add up to {score:+.1f}, so the text is {label} for investors"
                + (" (a score between -1 and +1 is neutral)." if label == "neutral" else ".")
            )
        else:
            lines.append("No cue points either way, so the text has no clear good or bad implication: neutral.")
        if entities and any(e["sentiment"] != label for e in entities):
            lines.append("Per entity: " + "; ".join(f"{e['name']} is {e['sentiment']}" for e in entities) + ".")
        lines.append(f"Risk: {risk_reason}.")
        lines.append(f"Conclusion: sentiment is {label}; risk is {risk}.")
        answer = {"entities": entities, "sentiment": label, "risk_level": risk}
        thinking = "\n".join(lines)
        tag = self.task.thinking_tag
        return f"<{tag}>\n{thinking}\n</{tag}>\n{json.dumps(answer, ensure_ascii=False)}"


def _describe_change(old: float, new: float) -> str:
    if old == 0:
        return f"from {old:g} to {new:g}"
    return f"from {old:,.4g} to {new:,.4g}, {100 * (new - old) / abs(old):+.0f}%"

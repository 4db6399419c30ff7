"""Entities of a finance text (cashtags, tickers, company names, other proper nouns) and each one's sentiment,
for the rules teacher."""

from __future__ import annotations

import re

from data_gen.teachers.rules.lexicon import SUBJECT_VERBS, Cue, Lexicon


def find_entities(lex: Lexicon, text: str) -> list[str]:
    """Cashtags, names before a ticker or a possessive, names ending in a company suffix, and other proper
    nouns that are not common sentence openers, places, months or units."""
    found: list[str] = []
    for m in re.finditer(r"(?<![\w$])\$[A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?\b", text):
        found.append(m.group(0).upper())
    token = r"[A-ZÀ-ÖØ-ÞĀ-Ž][\w&.'’\-]*|[A-Z0-9]{2,}\b"
    run = re.compile(rf"(?:{token})(?:\s+(?:&\s+)?(?:(?:de|of|du|la|von|van)\s+)?(?:{token}))*")
    for m in run.finditer(text):
        if re.search(r"(?:\(\s*[A-Za-z]+\s*:|<|\$)\s*$", text[: m.start()]) or m.group(0)[0].isdigit():
            continue  # a ticker after "(NASDAQ:", a Reuters code "<SIE.DE>", a cashtag, or a number
        words = m.group(0).split()
        while words and words[0].lower().strip(".,'’") in lex.not_entities:
            words.pop(0)
        while words and words[-1].lower().strip(".,'’") in {"shares", "stock", "stocks", "price", "said"}:
            words.pop()
        if not words:
            continue
        name = re.sub(r"(?:'s|’s|')$", "", " ".join(words)).strip(" .,'’")
        if len(name) < 2 or name.lower() in lex.not_entities or re.fullmatch(r"[\d.,%]+", name):
            continue
        if len(words) > 6:  # a run of capitalised words that long is a title, not a name
            continue
        following = text[m.end() : m.end() + 16]
        at_start = text[: m.start()].strip() == "" and not re.match(rf"\s+(?:{SUBJECT_VERBS})\b", following)
        strong = (
            words[-1].lower().strip(".,") in lex.suffixes
            or re.match(
                r"\s*(?:'s|’s|\s's|\(\s*(?:nasdaq|nyse|lse|omx|otc|tsx|asx|xetra)?\s*:?\s*[A-Z]|<|\$[A-Z])",
                following,
                re.I,
            )
            or re.search(r"(?:'s|’s)$", m.group(0))
        )
        keep = strong or not at_start or len(words) < len(m.group(0).split())
        if keep and not any(name.lower() == f.lower() for f in found):
            found.append(name)
    return found[:10]


def entity_sentiment(text: str, name: str, weighted: list[tuple[Cue, float]], overall: str) -> str:
    """The sentiment of the clause that names the entity, when its cues point one way; else the overall one."""
    low = text.lower()
    at = low.find(name.lower())
    if at < 0:
        return overall
    bounds = [0] + [m.end() for m in re.finditer(r";|\bbut\b|\bwhile\b|\bwhereas\b|\bafter\b", low)] + [len(low)]
    start = max(b for b in bounds if b <= at)
    end = min((b for b in bounds if b > at), default=len(low))
    score = sum(w for c, w in weighted if start <= c.start < end)
    if score >= 1.0:
        return "positive"
    if score <= -1.0:
        return "negative"
    return overall

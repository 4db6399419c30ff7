"""Duplicates, deterministic splits, and classification metrics checked against scikit-learn."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from data_gen.sources.dedup import Deduplicator
from data_gen.sources.splits import assign_split
from data_gen.tasks.metrics import classification_report


def test_exact_and_near_duplicates_keep_the_first() -> None:
    dedup = Deduplicator(threshold=0.85)
    base = (
        "Both operating profit and net sales for the six-month period increased , respectively from EUR7 .5 m "
        "and EUR655 .5 m , as compared to the corresponding period in 2005 ."
    )
    assert dedup.check("a", base, "row 1") is None
    assert dedup.check("b", base.upper().replace(" ", "  ")) == (
        "duplicate_text",
        "a",
        "same text as row 1 (ignoring case and spacing)",
    )
    near = dedup.check("c", base.replace("EUR7 .5", "EUR13 .8"))  # Jaccard of 5-grams 0.92
    assert near is not None and near[0] == "near_duplicate_text" and near[1] == "a" and "row 1" in near[2]
    assert dedup.check("d", "Nokia will publish its interim report on 20 April .") is None


def test_bulk_signatures_are_datasketchs() -> None:
    """The numpy signatures equal datasketch's MinHash of the same shingles, for ASCII texts (hashed as byte
    windows), non-ASCII ones (hashed one shingle at a time), short and empty ones, in any mix."""
    import zlib

    import numpy as np
    from datasketch import MinHash

    from data_gen.sources.dedup import SCHEME, shingles

    rng = random.Random(7)
    words = ["Nokia", "EUR", "mn", "profit", "rose", "fell", "13.1", "%", ",", ".", "quarter"]
    words += ["Straße", "café", "日本", "--", "the", "of"]
    texts = ["", "a", "abcde", "abcdef", "!!! ...", "  Net  SALES, up; 5% ", "Ünïcödé café — déjà vu", "x" * 300]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 25))) for _ in range(300)]
    rng.shuffle(texts)
    dedup = Deduplicator()
    for text, signature in zip(texts, dedup.signatures(texts), strict=True):
        expected = MinHash(num_perm=128, seed=1, scheme=SCHEME, hashfunc=zlib.crc32)
        expected.update_batch(list(shingles(text)))
        assert np.array_equal(signature, expected.hashvalues), text
    assert np.array_equal(dedup.signatures(texts[:1])[0], dedup.signatures(texts)[0])


def test_near_duplicate_lookups_use_the_index() -> None:
    """A lookup that scans the band table makes duplicate detection quadratic in the input size."""
    from data_gen.sources.bands import _FIND
    from data_gen.sources.dedup import _EXACT, _SIGNATURES

    dedup = Deduplicator()
    for query, keys in ((_FIND, [1, 2, 3]), (_SIGNATURES, [1, 2]), (_EXACT, [b"a", b"b"])):
        sql = "EXPLAIN QUERY PLAN " + query.format(",".join("?" * len(keys)))
        plan = [step[-1] for step in dedup.db.execute(sql, keys)]
        searches = [step for step in plan if step.startswith("SEARCH")]
        assert searches and all("PRIMARY KEY" in step for step in searches), plan
        assert not any("SCAN" in step for step in plan), plan


def test_checks_in_bulk_decide_as_one_at_a_time() -> None:
    """``check_many`` over chunks (texts of one chunk matched in memory, of earlier chunks through SQLite) gives
    what checking one text at a time gives: exact and near duplicates inside a chunk and across chunks, the
    most similar kept text, the earliest on a tie, nothing registered by ``register=False``; and the same again
    with the band index moved from memory to SQLite every few texts."""
    rng = random.Random(11)
    words = ["Nokia", "Elisa", "Fortum", "profit", "sales", "rose", "fell", "EUR", "mn", "quarter", "year", "said"]
    words += ["shares", "market", "percent"]
    originals = [" ".join(rng.choice(words) for _ in range(18)) + f" {i}." for i in range(60)]
    texts = []
    for _ in range(400):
        text = rng.choice(originals)
        kind = rng.random()
        if kind < 0.3:
            text = text.upper()  # an exact duplicate
        elif kind < 0.6:
            text = text.replace(" ", "  ", 1) + " x"  # a near one
        elif kind < 0.7:
            text = "Über " + text  # a near one, not ASCII
        texts.append(text)
    entries = [(f"r{i}", text, f"row {i}") for i, text in enumerate(texts)]
    one_at_a_time = Deduplicator()
    expected = [one_at_a_time.check(*entry) for entry in entries]
    reasons = Counter(found[0] for found in expected if found)
    assert reasons["duplicate_text"] > 50 and reasons["near_duplicate_text"] > 50 and expected.count(None) >= 60
    for chunk in (7, 512):
        assert list(Deduplicator().check_many(entries, chunk=chunk)) == expected
    spilling = Deduplicator(memory_pairs=5 * one_at_a_time.bands)  # moved to SQLite every 5 texts registered
    assert list(spilling.check_many(entries, chunk=16)) == expected
    stored = spilling.db.execute("SELECT COUNT(*) FROM dedup_band").fetchone()[0]
    assert stored and stored + spilling.band_index.in_memory == expected.count(None) * spilling.bands
    looking, alone = Deduplicator(), Deduplicator()
    assert looking.register_all(entries[:100]) == alone.register_all(entries[:100]) == 100
    looked = list(looking.check_many(entries[100:], register=False, chunk=64))
    assert looked == [alone.check(*entry, register=False) for entry in entries[100:]]
    assert any(looked) and None in looked


def test_band_index_finds_every_pair_in_memory_and_on_disk() -> None:
    """Pairs added in many runs (merged as they grow), or moved to SQLite past the bound: a lookup finds every
    stored pair of the buckets asked for, and no other."""
    import sqlite3

    import numpy as np

    from data_gen.sources.bands import BandIndex
    from data_gen.sources.dedup import TABLES

    rng = np.random.default_rng(5)
    for memory_pairs in (10**9, 250):
        db = sqlite3.connect(":memory:")
        db.executescript(TABLES)
        index, stored = BandIndex(db, memory_pairs), set()
        for seq in range(1, 120):
            buckets = rng.integers(-50, 50, 11, dtype=np.int64)  # few buckets: many texts share each
            index.add(buckets, np.full(11, seq, dtype=np.int64))
            stored |= {(int(b), seq) for b in buckets}
        assert index.on_disk == (memory_pairs == 250) and len(index.runs) <= 8
        found = index.find({-3, 0, 7, 99})
        assert sorted(set(found)) == sorted(pair for pair in stored if pair[0] in {-3, 0, 7, 99})
        assert index.find(set()) == []


def test_near_duplicate_detection_can_be_switched_off() -> None:
    dedup = Deduplicator(near=False)
    dedup.check("a", "Sales rose 10% to EUR 5 mn in the quarter, the company said.")
    assert dedup.check("b", "Sales rose 10% to EUR 6 mn in the quarter, the company said.") is None


def test_splits_are_deterministic_and_follow_the_fractions() -> None:
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    ids = [f"row-{i}" for i in range(20_000)]
    first = [assign_split(i, fractions) for i in ids]
    assert first == [assign_split(i, fractions) for i in ids]
    counts = Counter(first)
    assert abs(counts["train"] / len(ids) - 0.8) < 0.01 and abs(counts["test"] / len(ids) - 0.1) < 0.01
    assert [assign_split(i, fractions, salt="other") for i in ids] != first
    assert assign_split("x", {"train": 1.0}) == "train"


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed: int) -> None:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = ["positive", "negative", "neutral"]
    rng = random.Random(seed)
    gold = [rng.choice(labels) for _ in range(200)]
    predicted = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    report = classification_report(gold, predicted, labels)
    assert report["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert report["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro"))
    assert report["weighted_f1"] == pytest.approx(f1_score(gold, predicted, average="weighted"))
    p, r, f, _ = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        assert report["per_class"][label]["precision"] == pytest.approx(p[i])
        assert report["per_class"][label]["recall"] == pytest.approx(r[i])
        assert report["per_class"][label]["f1"] == pytest.approx(f[i])
    assert report["confusion"] == confusion_matrix(gold, predicted, labels=labels).tolist()


def test_a_missing_prediction_is_wrong_and_never_a_class() -> None:
    report = classification_report(["positive", "negative"], ["positive", None], ["positive", "negative", "neutral"])
    assert report["accuracy"] == 0.5 and report["missing"] == 1
    assert report["per_class"]["negative"]["recall"] == 0.0
    assert sum(map(sum, report["confusion"])) == 1  # the missing answer is in no cell
    # a class never predicted and one never in the gold set both count in macro-F1 only when present
    single = classification_report(
        ["neutral"] * 3, ["neutral", "neutral", "positive"], ["positive", "negative", "neutral"]
    )
    assert single["macro_f1"] == pytest.approx((0.0 + 0.8) / 2)

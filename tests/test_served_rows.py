"""KD rows from a `/v1/completions` echo answer, worked by hand (data_gen.kd.served.scored_from_echo)."""

from __future__ import annotations

import pytest

from data_gen.kd.rows import check_rows
from data_gen.kd.served import ScoringError, scored_from_echo, token_id


def answer(ids: list[int], generated: int, entries: list[dict[int, float] | None]) -> dict:
    names = [f"token_id:{t}" for t in [*ids, generated]]
    top = [None if e is None else {f"token_id:{t}": v for t, v in e.items()} for e in entries]
    return {"choices": [{"text": "", "logprobs": {"tokens": names, "top_logprobs": top}}]}


def test_row_p_is_entry_p_plus_one_and_the_last_row_is_the_generated_token() -> None:
    # prompt tokens 5 6 | reply tokens 7 8; entry i is the distribution of token i given the tokens before it
    ids = [5, 6, 7, 8]
    entries = [
        None,
        {6: -0.1, 1: -2.0},
        {7: -0.5, 2: -1.0},  # row for position 1 (the last prompt token): predicts the reply's first token
        {3: -0.2, 8: -3.0, 4: -2.5},  # the prompt token itself (8) is outside the top 2: vLLM adds it
        {9: -0.01, 4: -4.0},  # the generated token's entry: the row after the last position
    ]
    scored = scored_from_echo(answer(ids, 9, entries), ids, prompt_tokens=2, top_k=2)
    assert scored.input_ids == ids and scored.prompt_tokens == 2
    assert scored.token_ids == [[3, 4], [9, 4]]  # rows for positions 2 and 3, sorted, the extra token dropped
    assert scored.logprobs == [[-0.2, -2.5], [-0.01, -4.0]]
    assert check_rows(scored, 2) is None


def test_values_below_the_floor_are_clamped_and_ties_keep_the_servers_rank_order() -> None:
    ids = [1, 2]
    scored = scored_from_echo(answer(ids, 3, [None, {4: -9999.0, 2: -9999.0}, {3: -0.5}]), ids, 0, 2)
    assert scored.token_ids[0] == [4, 2] and scored.logprobs[0] == [-50.0, -50.0]
    assert check_rows(scored, 2) == "row 1 has 1 log-probabilities, not 2"  # the server gave fewer than K


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({"choices": [{"text": "x"}]}, "no log-probabilities for the prompt"),
        ({"choices": [{"logprobs": {"tokens": ["token_id:1"], "top_logprobs": [None]}}]}, "1 positions for 2 prompt"),
        (
            {"choices": [{"logprobs": {"tokens": ["a", "b", "c"], "top_logprobs": [None, {"b": -1.0}, {"c": -1.0}]}}]},
            "names tokens as text",
        ),
        (
            {
                "choices": [
                    {"logprobs": {"tokens": ["token_id:0", "token_id:1", "token_id:2"], "top_logprobs": [None, {}, {}]}}
                ]
            },
            "scored other tokens than it was sent",
        ),
    ],
)
def test_answers_that_cannot_be_rows_say_why(response: dict, message: str) -> None:
    with pytest.raises(ScoringError, match=message):
        scored_from_echo(response, [1, 2], 1, 2)


def test_log_probabilities_that_are_not_numbers_are_a_scoring_error() -> None:
    ids = [1, 2]
    for bad in ("-0.5", None, [-0.5]):
        response = answer(ids, 3, [None, {2: bad, 4: -1.0}, {3: -0.1, 5: -2.0}])
        with pytest.raises(ScoringError, match="not numbers"):
            scored_from_echo(response, ids, 0, 2)


def test_token_names() -> None:
    assert token_id("token_id:151645") == 151645
    for bad in ("token_id:", "token_id:-1", "hello", "id:3"):
        with pytest.raises(ScoringError):
            token_id(bad)


def test_a_whole_answer_at_once_gives_what_entry_by_entry_gives() -> None:
    """The array path (every regular answer) against the plain one on a vLLM-like answer: K or K + 1 entries per
    position, ties, values below the floor, the prompt token outside the top K."""
    import random

    from data_gen.kd.served import _top_rows, _top_rows_one_by_one

    rng = random.Random(7)
    top_k, entries = 5, []
    for _ in range(300):
        entry = {f"token_id:{rng.randrange(50_000)}": rng.choice([-0.25, -1.5, -9999.0, -rng.expovariate(0.3)])
                 for _ in range(top_k + rng.randint(0, 1))}  # fmt: skip
        entries.append(entry)
    fast = _top_rows(entries, top_k)
    assert fast is not None and fast == _top_rows_one_by_one(entries, top_k)
    nan, huge = {"token_id:1": float("nan")}, {f"token_id:{10**19}": -1.0}  # an id beyond int64
    for irregular in ([*entries[:3], None], [*entries[:3], {"hello": -1.0}], [nan] * 5, [huge]):
        assert _top_rows(irregular, 1) is None  # the plain path says what is wrong with it

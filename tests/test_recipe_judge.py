"""Committee judging: "Score: <n>" parsed from real-looking judge outputs, with robust fallbacks;
unparseable ones are None (excluded from the mean); argmax ties go to the earliest candidate."""
from __future__ import annotations

import pytest

from recipes._reconstruct import JUDGE_PROMPT, parse_score, select

JUDGMENTS = [
    ("The response is accurate and well organised.\nScore: 5", 5),
    ("The answer addresses the question but misses the second part.\n\nScore: 3", 3),
    ("Justification: mostly correct, minor formatting issues.\nScore: 4\n", 4),
    ("The response is off-topic.\nScore: 1.", 1),
    ("Helpful and concise.\n**Score: 4**", 4),
    ("Clear explanation with an example.\nScore: [5]", 5),
    ("It repeats itself a lot.\nScore - 2", 2),
    ("Relevant, but contains a factual error about the date.\nscore: 3/5", 3),
    ("Good structure.\nFinal Score: 4", 4),
    ("The reply is partially correct.\nScore: 3.5", 3.5),
    ("Score: 2\nThe response ignores the requested format.", 2),  # score first, justification after
    ("The response is helpful. I would rate it 4 out of 5.", 4),
    ("Rating: 5\n", 5),
    ("Everything requested is there.\n\n4", 4),
    ("The response fails to answer.\nScore: 0", None),  # out of range
    ("The response is decent.\nScore: 7", None),  # out of range, nothing else
    ("I cannot evaluate this response without more context.", None),
    ("", None),
    ("Score: <rating>", None),  # the judge echoed the placeholder
    ("The response deserves a high score for clarity.\nScore: **5**", 5),
    ("Explanation: the code compiles and runs.\nScore:4", 4),
    ("The first draft scored 2 but the revision is better.\nScore: 4", 4),
    ("1. Accuracy: good\n2. Clarity: fair\nOverall score is 3", 3),
    ("Score: 5 - excellent response.", 5),
]


def test_table_has_at_least_twenty_judgments():
    assert len(JUDGMENTS) >= 20


@pytest.mark.parametrize("text, expected", JUDGMENTS)
def test_score_is_parsed_from_the_last_line_with_fallbacks(text, expected):
    assert parse_score(text) == expected


def test_prompt_asks_for_the_score_on_the_last_line():
    assert JUDGE_PROMPT.rstrip().endswith('and then write "Score: <rating>" in the last line.')
    assert "{instruction}" in JUDGE_PROMPT and "{response}" in JUDGE_PROMPT


def test_mean_over_parseable_judges_and_deterministic_tie_break():
    best, means = select([[4, None, 4], [5, 3, None], [None, None, None]])
    assert means == [4.0, 4.0, None] and best == 0  # tie: earliest candidate
    assert select([[None], [None]]) == (0, [None, None])  # nothing parseable: first candidate
    assert select([[2, 2], [3, None]])[0] == 1

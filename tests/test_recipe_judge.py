"""Committee judging: "Score: <n>" parsed from real-looking judge outputs, with robust fallbacks;
unparseable ones are None (excluded from the mean); argmax ties go to the earliest candidate."""
from __future__ import annotations

import pytest

from recipes.reconstruction import JUDGE_PROMPT, parse_score, select

# Seed 000, Table 3, as the paper prints it: one paragraph, the generated instruction and the output last.
TABLE_3 = (
    'Below is a user instruction and an AI response. Evaluate the quality of the AI’s response based '
    'on how well it fulfills the user’s request. Assign a score based on the following 5-point scale:'
    ' 1: The response is incomplete, off-topic, or contains irrelevant, vague, or missing '
    'information. It may repeat the user’s question, include personal opinions, or be written from a '
    'non-AI perspective (e.g., blog-like). It may also have promotional or irrelevant content. 2: The'
    ' response addresses some of the user’s request but lacks detail or direct relevance. It provides'
    ' only a general approach instead of a specific solution. 3: The response is helpful but lacks an'
    ' AI perspective. It covers the user’s request but appears taken from a personal blog, webpage, '
    'or similar source. It may include personal opinions, experiences, or mentions of external '
    'content. 4: The response is clear, complete, and written from an AI’s perspective. It directly '
    'addresses the user’s request, but there may be minor room for improvement, such as clarity or '
    'conciseness. 5: The response is excellent, written from an AI’s perspective, with a clear focus '
    'on the user’s request. It is thorough, well-organized, and shows expert knowledge without '
    'irrelevant content. The response is logical, easy to follow, and engaging. Provide a brief '
    'justification for your score and then write "Score: <rating>" in the last line. <generated '
    'instruction> <output>'
)

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


@pytest.mark.parametrize("text, expected", JUDGMENTS)
def test_score_is_parsed_from_the_last_line_with_fallbacks(text, expected):
    assert parse_score(text) == expected


def test_judge_prompt_is_table_3_of_seed_000_word_for_word():
    filled = JUDGE_PROMPT.format(instruction="<generated instruction>", response="<output>")
    # the paper typesets one paragraph; the template breaks lines between its items, nothing else
    assert " ".join(filled.split()) == TABLE_3
    assert filled.split("\n") == [*_table_3_items(), "", "<generated instruction>", "", "<output>"]
    assert "’" in JUDGE_PROMPT and "AI's" not in JUDGE_PROMPT  # the paper's typographic apostrophes


def _table_3_items() -> list[str]:
    import re

    return re.split(r" (?=[1-5]: The response|Provide a brief)", TABLE_3.removesuffix(" <generated instruction> <output>"))


def test_mean_over_parseable_judges_and_deterministic_tie_break():
    best, means = select([[4, None, 4], [5, 3, None], [None, None, None]])
    assert means == [4.0, 4.0, None] and best == 0  # tie: earliest candidate
    assert select([[None], [None]]) == (0, [None, None])  # nothing parseable: first candidate
    assert select([[2, 2], [3, None]])[0] == 1

"""A third-party domain: sums written in words, answered with a number. The package ships its data
files and builds the `Domain` the same way a study's `domain:` mapping does."""
from pathlib import Path

from harness.api import DomainFiles, file_domain

HERE = Path(__file__).parent

WORD_SUMS = file_domain(DomainFiles(name="word-sums", train=HERE / "train.jsonl", test=HERE / "test.jsonl",
                                    answer="number", max_new_tokens=8))

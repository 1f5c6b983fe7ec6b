"""Do the planned mixes' domain rows fit the fine-tuning job's `max_seq_length`? Checked before any work.

Training truncates a row to `max_seq_length` tokens (its chat-template form); a row whose prompt
alone fills the limit keeps no answer token and would teach nothing, so training refuses such a mix
unless `finetune.drop_long_rows` is set (harness/finetune.py). `validate` finds those rows first, for
every recipe, seed and sweep point, from the domain rows each mix draws (the seed's domain order,
`harness.mixing.domain_order`): the domain files are where long rows come from (OpenFunctions'
function definitions). Rehearsal rows a recipe generates or draws are checked when the mix is
trained. With more than EXACT_SEEDS seeds the check is conservative: every training row of the
domain counts, whether a seed draws it or not.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXACT_SEEDS = 256


@dataclass(frozen=True)
class MixLengths:
    """How one recipe's domain rows fit its job, over the study's seeds."""

    label: str  # recipe label, with its sweep point where it has one
    max_seq_length: int
    drop_allowed: bool
    rows: int  # distinct domain rows per mix (every training row of the domain when counted conservatively)
    over: int  # most rows longer than the limit in one seed's mix (truncated in training)
    dropped: int  # most rows with no answer token within the limit in one seed's mix
    longest: int  # the longest row any seed draws, in tokens
    seed: int | None  # the seed with the most dropped (else over) rows; None: all rows counted

    @property
    def refused(self) -> bool:
        """Training would drop rows and the job does not allow it."""
        return bool(self.dropped) and not self.drop_allowed

    def summary(self) -> str:
        return (f"{self.label}: {self.rows} domain rows per mix, longest {self.longest} tokens; over max_seq_length "
                f"{self.max_seq_length}: {self.over} (truncated), dropped: {self.dropped if self.drop_allowed else 0}")


def domain_row_lengths(variants, seeds: list[int], domain, data_dir: Path | None, base_model: str) -> list[MixLengths]:
    """One MixLengths per (settings, recipe entry, sweep label) of `variants`."""
    from harness.finetune import row_length
    from harness.mixing import domain_order, split_sizes
    from harness.models import spec_tokenizer
    from harness.recipe import make_recipe

    tokenizer = spec_tokenizer(base_model)
    train = domain.train_rows(data_dir)
    lengths: dict[int, object] = {}

    def length(index: int):
        if index not in lengths:
            lengths[index] = row_length(tokenizer, train[index]["messages"])
        return lengths[index]

    orders = ({seed: domain_order(seed, len(train)) for seed in seeds} if len(seeds) <= EXACT_SEEDS
              else {None: list(range(len(train)))})
    reports = []
    for settings, entry, label in variants:
        job = settings.finetune
        needed = make_recipe(entry).domain_rows_needed(*split_sizes(settings.mix))
        worst, longest = None, 0
        for seed, order in orders.items():
            drawn = [length(i) for i in (order[:needed] if seed is not None else order)]
            counts = (sum(r.dropped(job.max_seq_length) for r in drawn), sum(r.tokens > job.max_seq_length for r in drawn))
            longest = max(longest, *(r.tokens for r in drawn))
            if worst is None or counts > worst[0]:
                worst = (counts, seed, len(drawn))
        (dropped, over), seed, rows = worst
        reports.append(MixLengths(label, job.max_seq_length, job.drop_long_rows, rows, over, dropped, longest, seed))
    return reports


def long_row_problems(reports: list[MixLengths]) -> list[str]:
    """One line per distinct shortfall, naming every recipe it hits (recipes of one seed draw the same
    domain rows, so they usually share it)."""
    groups: dict[tuple, list[str]] = {}
    for report in reports:
        if report.refused:
            key = (report.max_seq_length, report.dropped, report.rows, report.seed, report.longest)
            groups.setdefault(key, []).append(report.label)
    lines = []
    for (limit, dropped, rows, seed, longest), labels in groups.items():
        where = f"seed {seed}" if seed is not None else "any seed"
        lines.append(f"finetune.max_seq_length: {limit} drops {dropped} of {rows} domain rows ({where}) of "
                     f"{'recipe' if len(labels) == 1 else 'recipes'} {', '.join(labels)}: their prompt alone fills "
                     f"the limit, the longest row is {longest} tokens; raise it to {longest} or set "
                     f"finetune.drop_long_rows: true")
    return lines

"""How much quality a plan may give up for its target, in the terms of the task's quality metric (tasks.Quality):
test accuracy in points for image models, perplexity in per cent for language models (lower is better there, and
a 0.3 rise means more on a 2.0 model than on a 20.0 one).

Every figure of a plan that speaks of quality (the ranking, the front, the verdict's sentence, the Plan page's
chart) goes through one Bound, so plans of every task are judged by the same code.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...tasks import task_of

# a quality metric's budget, from the plan's two knobs, in the metric's unit: max_drop is in points of accuracy;
# max_ppl_increase a fraction (0.1 is 10%) of the baseline's perplexity
LIMITS = {"accuracy": lambda max_drop, max_ppl_increase: max_drop,
          "perplexity": lambda max_drop, max_ppl_increase: 100 * max_ppl_increase}


@dataclass(frozen=True)
class Bound:
    field: str              # the record's field: "accuracy" or "perplexity"
    higher_is_better: bool
    limit: float            # the largest loss allowed, in `unit`
    base: float             # the baseline's value of `field`
    unit: str               # "pt" or "%"
    what: str               # "accuracy drop" or "perplexity increase", for sentences and axes

    def reference(self, row: dict) -> float:
        """What a row is judged against: the baseline, or for a child that trained after it its fair control (the
        baseline's own weights trained as long: labs.parent.fair_control), which its record names."""
        return row.get(f"control_{self.field}") or self.base

    def loss(self, row: dict) -> float:
        """How much worse than its reference (positive: worse), in `unit`."""
        if self.higher_is_better:
            return 100 * (self.reference(row) - row[self.field])
        return 100 * (row[self.field] / self.reference(row) - 1)

    def within(self, row: dict) -> bool:
        return self.loss(row) <= self.limit + 1e-9

    def score(self, row: dict) -> float:
        """Higher is better, whatever the field: for sorting and Pareto fronts."""
        return row[self.field] if self.higher_is_better else -row[self.field]

    def change(self, loss: float) -> str:
        """'-0.8 pt' (accuracy) or 'perplexity +4.2%', the way a reader says it."""
        return f"{-loss:+.1f} pt" if self.unit == "pt" else f"perplexity {loss:+.1f}%"

    def lost(self, loss: float) -> str:
        """'lost 2.8 pt' or 'has a 12.0% higher perplexity', for a trial past the bound."""
        return f"lost {loss:.1f} pt" if self.unit == "pt" else f"has a {loss:.1f}% higher perplexity"

    def short_limit(self) -> str:
        return f"{self.limit:g} pt" if self.unit == "pt" else f"{self.limit:g}% perplexity"

    def limit_text(self) -> str:
        return f"{self.limit:g} pt of the baseline's accuracy" if self.unit == "pt" else \
            f"{self.limit:g}% of the baseline's perplexity (of the baseline trained as long, for a trial that fine-tuned)"

    def as_dict(self) -> dict:
        return {"field": self.field, "limit": self.limit, "unit": self.unit, "what": self.what, "base": self.base}


def bound_for(record: dict, max_drop: float, max_ppl_increase: float) -> Bound:
    """The bound for a baseline's record, in its task's quality metric. max_drop is in points; max_ppl_increase a
    fraction (0.1 is 10%)."""
    quality = task_of(record).quality
    return Bound(quality.field, quality.higher_is_better, LIMITS[quality.field](max_drop, max_ppl_increase),
                 record[quality.field], quality.unit, quality.change)

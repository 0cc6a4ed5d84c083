"""The plan lab's one typed config, for every task (the defaults that differ by task are filled in by
`for_models`, from DEFAULTS)."""
from __future__ import annotations

from dataclasses import dataclass

from ...config import param
from ...tasks import Task
from ...techniques.quantize import METHODS as QUANT_METHODS
from ..configs import TechniqueConfig
from .target import Target, parse_target

IMAGE_TRIALS, IMAGE_EPOCHS = 12, 6
LM_TRIALS = 4
LM_TIME_BUDGET_S = 300  # a language model's plan stops starting trials after 5 minutes: what a lesson can wait for

# task name -> (finished trials wanted, most fine-tuning epochs of one trial, seconds the search may take), when the
# config names none. A language model's trials fine-tune by steps (text.py's FINETUNE_STEPS), not by epochs: one
# pass over a large text is many minutes of CPU.
DEFAULTS = {"image": (IMAGE_TRIALS, IMAGE_EPOCHS, 0.0), "text": (LM_TRIALS, None, LM_TIME_BUDGET_S)}


@dataclass
class PlanConfig(TechniqueConfig):
    lab = "plan"
    target: str = param("latency=0.4", required=True,
                        help="KIND=RATIO, the share of the baseline's cost to keep: latency=0.4 (2.5x faster), "
                             "size=0.025 (40x smaller), params=0.2 (non-zero parameters) or macs=0.3; for a "
                             "language model, latency is its prefill")
    max_drop: float = param(1.0, min=0, max=100, help="image models: largest accuracy drop allowed, in percentage "
                                                      "points")
    max_ppl_increase: float = param(0.1, min=0, max=5, help="language models: largest perplexity increase allowed, "
                                                            "10%% (or 0.1) by default")
    trials: int | None = param(None, min=1, max=10_000,
                               help=f"finished trials wanted (stopped-early ones count; default {IMAGE_TRIALS} for "
                                    f"image models, {LM_TRIALS} for language models)")
    finetune_epochs: int | None = param(None, min=1, max=1000,
                                        help=f"most fine-tuning epochs one trial may use (default {IMAGE_EPOCHS} for "
                                             "image models; a language model counts steps, see --finetune-steps)")
    finetune_steps: int | None = param(None, min=1, max=1_000_000,
                                       help="language models: most fine-tuning steps one trial may use (default 100; "
                                            "--finetune-epochs N instead allows N passes over the text)")
    time_budget: float | None = param(None, min=0, max=7 * 86400,
                                      help=f"seconds the search may take: no trial starts after them, and the best "
                                           f"so far is verified (default {LM_TIME_BUDGET_S} for language models, "
                                           "none for image models; 0: none)")
    quantize: list[str] = param(["static_int8", "dynamic_int8"], choices=QUANT_METHODS,
                                help="int8 methods the search may pick (it may also pick none)")
    share_bits: list[int] = param([3, 4, 5, 6, 8], min=1, max=8,
                                  help="weight-sharing bits the search may pick (it may also share none)")
    study: str | None = param(None, help="study name: the same command with it in more processes shares trials")

    def check(self) -> None:
        super().check()
        parse_target(self.target)

    def for_models(self, task: Task) -> "PlanConfig":
        """With the defaults that depend on the task of the model planned for filled in."""
        trials, epochs, budget = DEFAULTS[task.name]
        return self.replace(trials=self.trials or trials, finetune_epochs=self.finetune_epochs or epochs,
                            time_budget=budget if self.time_budget is None else self.time_budget)

    def parsed_target(self) -> Target:
        return parse_target(self.target)

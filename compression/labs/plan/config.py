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
LM_TRIALS, LM_MAX_EPOCHS = 4, 2  # an epoch of the default gpt is ~20 s on 2 cores: a plan of ~3 minutes

# task name -> (finished trials wanted, most fine-tuning epochs of one trial), when the config names none
DEFAULTS = {"image": (IMAGE_TRIALS, IMAGE_EPOCHS), "text": (LM_TRIALS, LM_MAX_EPOCHS)}


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
                                             f"image models, {LM_MAX_EPOCHS} for language models)")
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
        trials, epochs = DEFAULTS[task.name]
        return self.replace(trials=self.trials or trials, finetune_epochs=self.finetune_epochs or epochs)

    def parsed_target(self) -> Target:
        return parse_target(self.target)

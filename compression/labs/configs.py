"""One typed config per lab. The CLI's flags, the job queue's validation and the pages' widgets all come from
these declarations, so each parameter, its range and its help are written once."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import LabConfig, param
from ..core.data import DATASETS
from ..core.models import parse_spec
from ..core.timing import QUOTE_BUDGET_S
from ..core.train import TrainConfig
from ..errors import LabError
from ..search.space import DEFAULT_SPACES, check_space_fits_data, families_for, validate_space
from ..tasks import IMAGE_TASK, Task, check_model_fits_data, task_of
from ..text.prune import CALIBRATION_SEQUENCES
from ..text.prune import PATTERNS as LM_PATTERNS
from ..text.train import DEFAULT_STEPS
from ..techniques.distill import DistillConfig
from ..techniques.prune import METHODS as PRUNE_METHODS
from ..techniques.prune import SCHEDULES, PruneConfig
from ..techniques.quantize import METHODS as QUANT_METHODS
from ..techniques.quantize_kernels import DEFAULT_GROUP_SIZE, GROUP_SIZES
from .stages import parse_steps

DEVICE_HELP = "cpu, cuda or auto (auto: cuda for image data when a GPU is present, cpu for small data like digits)"


def check_device(device: str | None) -> None:
    if device not in (None, "auto", "cpu") and not str(device).startswith("cuda"):
        raise LabError(f"Unknown device '{device}'. Known: auto, cpu, cuda")


@dataclass
class CommonConfig(LabConfig):
    """Where the data comes from and where results are measured."""
    lab = "common"
    dataset: str = param("digits", help="a registered data set, imagefolder:PATH (class subfolders of images), or "
                                        "text:PATH (a .txt file or a folder of .txt/.md files)",
                         choices=DATASETS)
    device: str | None = param(None, help=DEVICE_HELP)
    data_dir: str | None = param(None, help="folder with torchvision's data set files")
    download: bool = param(False, help="download mnist/fashion_mnist/cifar10 if missing (needs internet)")
    latency_batch: int = param(256, min=1, max=65536, help="throughput batch for latency (batch 1 is timed too)")

    def task(self) -> Task:
        """The task of the data set (a technique started from a stored run asks the run: labs.parent)."""
        return task_of(self.dataset)

    def check(self) -> None:
        check_device(self.device)
        refusal = self.task().unavailable(self.lab)
        if refusal:
            raise LabError(refusal)


IMAGE_FINETUNE_EPOCHS = IMAGE_TASK.finetune_epochs
PATTERN_METHOD = "magnitude"  # the default method for an N:M pattern: patterns are for the language-model pruners


@dataclass
class BaselineConfig(CommonConfig):
    """A model trained (or loaded from the cache) on a data set: what every technique starts from."""
    lab = "train"
    model: str = param("lenet5", help="model spec: NAME or NAME:key=value,...")
    epochs: int = param(10, min=0, max=10_000, help="training epochs")
    seed: int = param(0, min=0, help="training seed")
    batch_size: int = param(TrainConfig.batch_size, min=1, max=65536, help="training batch size")
    lr: float = param(TrainConfig.lr, above=0, max=10, help="learning rate")
    optimizer: str = param(TrainConfig.optimizer, choices=("adam", "sgd"), help="optimizer")
    weight_decay: float = param(TrainConfig.weight_decay, min=0, max=1, help="L2 weight decay")
    augment: bool = param(False, help="random crop and horizontal flip while training (photos, not digits)")
    train_steps: int = param(0, min=0, max=1_000_000,
                             help=f"optimizer steps for a language model (0: {DEFAULT_STEPS}); image models train "
                                  "by --epochs")
    context: int = param(0, min=0, max=65536, help="tokens per sequence for a language model (0: the model's own, "
                                                   "gpt's context=, or 128 for hf:)")

    def check(self) -> None:
        super().check()
        parse_spec(self.model)
        check_model_fits_data(self.dataset, self.model)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,
                           weight_decay=self.weight_decay, seed=self.seed, augment=self.augment)


@dataclass
class TechniqueConfig(BaselineConfig):
    """A technique applied to the baseline, or to any stored run (`from_run`)."""
    from_run: int | None = param(None, min=1, flag="--from", help="start from this stored run id")


@dataclass
class PruneLabConfig(TechniqueConfig):
    lab = "prune"
    method: str | None = param(None, choices=PRUNE_METHODS,
                               help="pruning method (default: global_l1 for image models, magnitude for language "
                                    "models)")
    sparsities: list[float] | None = param(None, min=0, below=1, flag="--sparsity",
                                           help="one or more sparsities in [0, 1): a sweep (a language model may take "
                                                "--pattern instead)")
    finetune_epochs: int | None = param(None, min=0, max=1000,
                                        help=f"fine-tuning epochs after pruning (default: {IMAGE_FINETUNE_EPOCHS} for "
                                             "image models; 0 for language models, pruned one-shot as the papers do)")
    finetune_steps: int = param(0, min=0, max=1_000_000,
                                help="language models: fine-tune for this many optimizer steps instead of whole "
                                     "epochs (an epoch of a large text is long)")
    schedule: str = param("oneshot", choices=SCHEDULES, help="oneshot, or iterative (AGP)")
    steps: int = param(1, min=1, max=100, help="pruning steps for the iterative schedule")
    layers: list[str] | None = param(None, help="module names to prune (default: every conv and linear)")
    skip_first_last: bool = param(False, help="leave the first and last layer dense")
    round_to: int | None = param(None, choices=(None, 8, 16), help="round kept channels to a multiple of 8 or 16")
    with_sensitivity: bool = param(False, flag="--sensitivity", help="also prune each layer alone at 30-90%%")
    pattern: str | None = param(None, choices=(None, *LM_PATTERNS),
                                help="language models: N:M semi-structured sparsity (2:4 keeps 2 of every 4 "
                                     "weights) instead of --sparsity")
    calibration: int = param(CALIBRATION_SEQUENCES, min=1, max=4096,
                             help="language models: training sequences that calibrate wanda, sparsegpt and the "
                                  "structured methods' importance")
    distill: bool = param(False, help="language models: fine-tune with the parent as teacher (KL on its logits "
                                      "plus cross-entropy), as Minitron does")

    def check(self) -> None:
        super().check()
        if self.sparsities is None and self.pattern is None:
            raise LabError("prune needs --sparsity (one or more, e.g. 0.5 0.7 0.9), or for a language model "
                           "--pattern 2:4 or 4:8")
        if self.sparsities is not None and not self.sparsities:
            raise LabError("The sweep is empty: give at least one sparsity, e.g. 0.5 0.7 0.9")
        method = self.method or (PATTERN_METHOD if self.pattern is not None else self.task().default_prune_method)
        if self.pattern is not None:
            if not PRUNE_METHODS[method].language:
                raise LabError(f"N:M patterns ({self.pattern}) are for the language-model methods "
                               f"({', '.join(n for n in PRUNE_METHODS.names() if PRUNE_METHODS[n].language)}).")
            if self.sparsities not in (None, [0.5]):
                raise LabError(f"--pattern {self.pattern} fixes the sparsity at 50%: leave out --sparsity.")
        if not PRUNE_METHODS[method].language:
            self.prune_configs()

    def method_for(self, task: Task) -> str:
        """The method asked for, or the task's default (the task is known once the parent is: a --from run may
        be of either)."""
        return self.method or task.default_prune_method

    def prune_configs(self) -> list[PruneConfig]:
        """An image model's sweep (a language model's: text.recipes.lm_prune_configs)."""
        epochs = IMAGE_FINETUNE_EPOCHS if self.finetune_epochs is None else self.finetune_epochs
        return [PruneConfig(method=self.method_for(IMAGE_TASK), sparsity=float(s), finetune_epochs=epochs,
                            schedule=self.schedule, steps=self.steps,
                            layers=tuple(self.layers) if self.layers else None, skip_first_last=self.skip_first_last,
                            round_to=self.round_to, seed=self.seed) for s in self.sparsities]


@dataclass
class QuantizeLabConfig(TechniqueConfig):
    lab = "quantize"
    methods: list[str] = param(["dynamic_int8", "static_int8"], choices=QUANT_METHODS, flag="--method",
                               required=True, help="one or more quantization methods")
    calibration_batches: int = param(8, min=1, max=1000, help="batches that calibrate static int8")
    group_size: int = param(DEFAULT_GROUP_SIZE, choices=GROUP_SIZES,
                            help="int4_packed: input columns that share one scale and zero (smaller: more accurate, "
                                 "a little larger)")

    def check(self) -> None:
        super().check()
        if not self.methods:
            raise LabError(f"Pick at least one method: {', '.join(QUANT_METHODS)}")


@dataclass
class PipelineLabConfig(TechniqueConfig):
    lab = "pipeline"
    steps: str = param("prune:channel_l1=0.5,finetune:3,quantize:static_int8", required=True,
                       help="stages, e.g. prune:channel_l1=0.5,finetune:5,quantize:static_int8")
    calibration_batches: int = param(8, min=1, max=1000, help="batches that calibrate static int8")

    def check(self) -> None:
        super().check()
        if isinstance(self.steps, list):
            object.__setattr__(self, "steps", ",".join(self.steps))
        parse_steps(self.steps)


@dataclass
class DistillLabConfig(CommonConfig):
    lab = "distill"
    teacher: str = param("lenet5", required=True, help="a model spec (trains or loads its baseline) or a run id")
    student: str = param("mlp:hidden=16", required=True, help="a model spec, e.g. mlp:hidden=16")
    temperatures: list[float] = param([4.0], above=0, max=1000, flag="--temperature", help="one or more: a sweep")
    alpha: float = param(0.9, min=0, max=1, help="weight of the teacher's soft targets")
    label_fraction: float = param(1.0, above=0, max=1, help="share of training labels the students see")
    seeds: list[int] = param([0], min=0, help="one student pair per seed")
    epochs: int = param(20, min=1, max=10_000, help="student epochs")
    teacher_epochs: int = param(10, min=1, max=10_000, help="epochs of the teacher's baseline")
    student_steps: int = param(0, min=0, max=1_000_000,
                               help=f"language models: optimizer steps per student (0: {DEFAULT_STEPS})")

    def check(self) -> None:
        super().check()
        self.task().check_distill(self)

    def distill_configs(self) -> dict[tuple[float, int], DistillConfig]:
        return {(t, s): DistillConfig(t, self.alpha, self.label_fraction, self.epochs, s)
                for t in self.temperatures for s in self.seeds}


def _objective_names():
    from ..search.strategies import objective_names
    return objective_names()


def _objectives_for(data: str):
    from ..search.strategies import OBJECTIVES_BY_DATA
    return OBJECTIVES_BY_DATA[data]


def _strategies():
    from ..search.strategies import STRATEGIES
    return STRATEGIES


TEXT_TRIAL_STEPS = 60  # a search trial's steps on text: ~3-9 s for the gpt space's defaults on 2 cores


@dataclass
class SearchConfig(CommonConfig):
    lab = "search"
    space: str | None = param(None, choices=(None, *DEFAULT_SPACES),
                              help="search space family (default: cnn for image data, gpt for text)")
    choices: dict = param({}, cli=False, help="overrides of the default choices per dimension")
    strategy: str = param("random", choices=lambda: _strategies().names(), help="search strategy")
    trials: int = param(20, min=1, max=10_000, help="completed trials wanted")
    epochs: int = param(3, min=1, max=1000, help="epochs per trial (low fidelity; image models)")
    train_steps: int = param(0, min=0, max=1_000_000,
                             help=f"optimizer steps per trial for a language model (low fidelity; 0: "
                                  f"{TEXT_TRIAL_STEPS}, a few seconds each on two cores)")
    objective: str = param("params", choices=lambda: _objective_names(),
                           help="the cost to minimise: params, macs, latency or none for image models; decode "
                                "(ms per generated token), params or none for language models")
    max_params: int | None = param(None, min=1, help="constraint: at most this many parameters")
    max_macs: int | None = param(None, min=1, help="constraint: at most this many MACs per sample (image models)")
    early_stop: bool = param(False, help="stop bad trials early (objective 'none' only)")
    seed: int = param(0, min=0, help="sampler and training seed")
    latency_batch: int = param(64, min=1, max=65536,
                               help="batch for the latency objective and records (image models; a language "
                                    "model's prefill is timed at batch 8, decode at batch 1)")
    study: str | None = param(None, help="study name (an existing study is resumed)")

    def check(self) -> None:
        super().check()
        task = self.task()
        data = task.search_data
        if self.space is None:  # the first family that takes this data: cnn for images, gpt for text
            object.__setattr__(self, "space", families_for(data)[0])
        check_space_fits_data(self.space, self.dataset, data)
        object.__setattr__(self, "choices", validate_space(self.space, self.choices))
        fitting = _objectives_for(data)
        if self.objective not in fitting:
            raise LabError(f"The {self.objective} objective is not measured for {data} models: on "
                           f"'{self.dataset}' use --objective {' or '.join(fitting.names())}.")
        if self.max_macs is not None and "max_macs" not in task.search_constraints:
            raise LabError("--max-macs counts MACs per image: for a language model use --max-params.")
        if self.early_stop and self.objective != "none":
            raise LabError("Optuna's pruners stop bad trials only in single-objective studies: use objective "
                           "'none' (accuracy, with a --max-params or --max-macs constraint) to stop trials early.")

    def steps_per_trial(self) -> int:
        return self.train_steps or TEXT_TRIAL_STEPS


@dataclass
class DemoConfig(BaselineConfig):
    lab = "demo"


@dataclass
class UploadConfig(CommonConfig):
    lab = "upload"
    model: str = param("lenet5", required=True, help="the architecture the state dict belongs to")
    path: str = param("", required=True, cli=False, help="the uploaded file, saved under the lab folder")
    filename: str = param("upload.pt", cli=False, help="the name the user gave the file")

    def check(self) -> None:
        super().check()
        parse_spec(self.model)


@dataclass
class ImportDataConfig(LabConfig):
    """A zip of an image folder that the page saved under the lab folder: unpacked and checked by a job."""
    lab = "import_data"
    path: str = param("", required=True, cli=False, help="the uploaded zip, saved under the lab folder")
    filename: str = param("images.zip", cli=False, help="the name the user gave the file")


@dataclass
class RetimeConfig(LabConfig):
    """Time two stored runs together on this machine: the only way a speed-up is made."""
    lab = "speedup"
    run_a: int = param(None, min=1, required=True, cli=False, help="the reference run (A)")
    run_b: int = param(None, min=1, required=True, cli=False, help="the candidate run (B): speedup = time(A)/time(B)")
    device: str = param("cpu", help="cpu or cuda")
    batch_size: int | None = param(None, min=1, max=65536,
                                   help="input batch for the timing (default: the largest batch run A was timed "
                                        "at: its throughput batch, or a language model's prefill batch)")
    phase: str = param("prefill", choices=("prefill", "decode"),
                       help="language models: prefill (one call on batch x context tokens) or decode (cached "
                            "steps at batch 1)")
    rounds: int = param(7, min=5, max=1000, help="interleaved A/B rounds at least (in each process)")
    time_budget: float = param(QUOTE_BUDGET_S, min=0, max=600,
                               help="seconds of rounds at most, all processes together: more rounds until the CI "
                                    "is narrow enough to quote (within 15 percent of the speed-up), or this runs out and it is flagged "
                                    "imprecise; 0: exactly --rounds, in this process (a quick figure whose CI "
                                    "describes this process only)")
    processes: int = param(3, min=1, max=16, help="fresh processes that take turns timing, pooled, so that the CI "
                                                  "includes the process-to-process spread (with a time budget)")

    def check(self) -> None:
        check_device(self.device)

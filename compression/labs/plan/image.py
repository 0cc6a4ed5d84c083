"""An image model's plan: the recipe space of recipes_image searched on validation accuracy and the target's cost.

Optuna searches recipes (channel removal globally or per stage, weight zeroing, fine-tuning epochs, distillation
from the parent, int8 or weight sharing) on two objectives, validation accuracy and the target's cost (target.py),
with the target and the accuracy bound as constraints. Each finished trial is a stored child run of the parent.
Trials stop early twice: before fine-tuning when the one-shot model already misses the target and a finished trial
within the accuracy bound is closer to it, and during fine-tuning when validation accuracy is far below the bound.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import optuna

from ...core.measure import count_macs, count_params, effective_macs, serialized_size
from ...core.paired import record_fields, time_pair
from ...core.timing import machine_fingerprint
from ...core.train import accuracy, predict
from ...errors import CancelledError, LabError
from ...store import worker_name
from ...store.artifacts import save_model
from ...techniques.codec import fold_shared, share_weights
from ...techniques.quantize import METHODS as QUANT_METHODS
from ...techniques.quantize import availability, quantize_model
from ..context import RunContext
from ..io.compressed import encode_model, file_header, round_raw_tensors, save_blob
from ..parent import Parent, prepare_parent
from ..search import FINISHED
from .bound import Bound, bound_for
from .config import PlanConfig
from .planner import Planner, closest_cost, stop_before_finetuning, stop_if_cancelled
from .recipes_image import Built, Recipe, Space, Tuning, build, seed_params, shape, suggest
from .study import open_plan_study
from .target import Target

EARLY_STOP_PT = 5.0   # a trial this far past the accuracy bound after half its epochs does not come back
DIRECTIONS = ("maximize", "minimize")  # validation accuracy, the target's cost


@dataclass
class Env:
    """What every trial of one process shares."""
    config: PlanConfig
    target: Target
    bound: Bound
    parent: Parent
    space: Space
    tuning: Tuning
    base_val: float
    header: dict
    ctx: RunContext
    study: str = ""


def _device(config: PlanConfig) -> str:
    return config.device if config.device not in (None, "auto") else "cpu"


def _space(config: PlanConfig, unavailable: list[dict]) -> Space:
    """int8 methods this machine can run (others are reported, like the quantize lab does)."""
    methods = []
    for method in config.quantize:
        reason = ("int8 kernels run on the CPU and this plan times on " + _device(config)
                  if _device(config) != "cpu" else availability(method, "cpu"))
        if reason:
            unavailable.append({"method": method, "reason": reason})
        else:
            methods.append(method)
    return Space(config.finetune_epochs, tuple(methods), tuple(sorted(set(config.share_bits))))


def _timing(env: Env, built: Built, rounds: int = 5) -> dict:
    parent = env.parent
    device = "cpu" if built.report.get("quantize", {}).get("real_int8") else _device(env.config)
    return time_pair(parent.model, built.model, parent.data.input_shape, parent.latency_batch, device=device,
                     dtype_b=built.input_dtype, rounds=rounds, block_s=max(0.01, env.ctx.latency_time / 6))


def _size(built: Built) -> int:
    return len(built.blob) if built.blob is not None else serialized_size(built.model)[0]


# the target's cost as a share of the parent's: (env, candidate, paired timing or None) -> ratio
COSTS = {
    "latency": lambda env, built, timing: 1 / (timing or _timing(env, built))["speedup"],
    "size": lambda env, built, timing: _size(built) / env.parent.record["size_bytes"],
    "params": lambda env, built, timing: count_params(built.model)[1] / env.parent.record["nonzero_params"],
    "macs": lambda env, built, timing: (count_macs(built.float_model, env.parent.data.input_shape)
                                        / env.parent.record["macs"]),
}


def _one_shot(env: Env, recipe: Recipe) -> Built:
    """The recipe's final shape without any training: what the trial will cost, for a few seconds."""
    model = shape(env.parent.model, env.parent.data, recipe, (0.0, 1.0), env.config.seed)
    if recipe.quantize:
        quantized, report = quantize_model(model, env.parent.data, recipe.quantize, "cpu")
        return Built(quantized, model, None, QUANT_METHODS[recipe.quantize].input_dtype, {"quantize": report})
    if recipe.bits and env.target.kind == "size":
        shared, report = share_weights(model, recipe.bits)
        folded = fold_shared(shared)
        round_raw_tensors(folded, {f"{r['layer']}.weight" for r in report["layers"]})
        return Built(folded, folded, encode_model(folded, recipe.bits, env.header))
    return Built(model, model)


def _price_first(env: Env, trial: optuna.Trial, recipe: Recipe) -> None:
    """Stop the trial before fine-tuning when it cannot be the answer: it misses the target and a finished
    trial that kept the accuracy is already closer to it."""
    closest = closest_cost(trial, "val_drop_pt", env.config.max_drop)
    if closest is None:
        return  # nothing to compare with yet: train it
    estimate = COSTS[env.target.kind](env, _one_shot(env, recipe), None)
    stop_before_finetuning(trial, env.target, estimate, closest, "accuracy")


def _early_stop(env: Env, trial: optuna.Trial, recipe: Recipe):
    """on_epoch: stop a trial whose validation accuracy is far past the bound after half its epochs (never after
    its last one: then stopping saves nothing and loses the finished model)."""
    seen = [0]

    def on_epoch(info: dict) -> None:
        seen[0] += 1
        drop = 100 * (env.base_val - info["val_accuracy"])
        if seen[0] * 2 >= recipe.epochs and seen[0] < recipe.epochs and drop > env.config.max_drop + EARLY_STOP_PT:
            trial.set_constraint("cost", 0.0)
            trial.set_constraint("accuracy", (drop - env.config.max_drop) / 10)
            note = f"stopped early after {seen[0]} of {recipe.epochs} epochs: validation accuracy -{drop:.1f} pt"
            trial.set_user_attr("note", note)
            raise optuna.TrialPruned(note)
        env.ctx.check_cancel()
    return on_epoch


def _store_trial(env: Env, trial: optuna.Trial, recipe: Recipe, built: Built, val_acc: float) -> tuple[dict, float]:
    """Measure the trial's model here, time it with the parent when the target is speed, store it as a child."""
    parent, ctx = env.parent, env.ctx
    record = parent.task.measure(built.model, parent.data, ctx, parent.latency_batch, input_dtype=built.input_dtype)
    if built.float_model is not built.model:  # int8 kernels run the float model's multiply-accumulates
        record["macs"] = count_macs(built.float_model, parent.data.input_shape)
        record["effective_macs"] = effective_macs(built.float_model, parent.data.input_shape)
    if record.get("effective_macs"):
        record["speedup_predicted_macs"] = parent.record["macs"] / record["effective_macs"]
    timing = _timing(env, built) if env.target.kind == "latency" else None
    if timing:
        record.update(record_fields(timing), speedup_reference=parent.run["id"])
    cost = COSTS[env.target.kind](env, built, timing)
    extra = {"study": env.study, "trial": trial.number, "recipe": recipe.to_dict(), "target": env.target.text(),
             "cost": cost, "val_accuracy": val_acc, **built.report.get("quantize", {})}
    if built.blob is not None:
        record["size_bytes"] = len(built.blob)  # the run's size is its file: `export --format compressed`
        extra.update(compressed_path=save_blob(built.blob), sharing=built.report["sharing"])
    run_id = ctx.store.add_run("plan", parent.run["dataset"], parent.run["model"],
                               {**env.config.to_dict(), "study": env.study, "recipe": recipe.to_dict()},
                               parent_id=parent.run["id"], record=record, extra=extra, method="plan",
                               label=f"plan trial {trial.number}: {recipe.label()}", job_id=ctx.job_id,
                               weights_path=save_model(built.model, parent.task.example_input(parent.data)))
    if timing:
        ctx.store.add_machine(machine_fingerprint(timing["device"], timing["threads"]))
        ctx.store.add_speedup(parent.run["id"], run_id, timing, "parent")
    return ctx.store.get_run(run_id), cost


def _trial_tuning(env: Env, trial: optuna.Trial, recipe: Recipe) -> Tuning:
    return dataclasses.replace(env.tuning, seed=env.config.seed + trial.number,
                               teacher_logits=env.tuning.teacher_logits if recipe.kd else None,
                               on_epoch=_early_stop(env, trial, recipe))


def make_objective(env: Env):
    def objective(trial: optuna.Trial):
        stop_if_cancelled(env.ctx, trial)
        recipe = suggest(trial, env.space)
        trial.set_user_attr("recipe", recipe.to_dict())
        trial.set_user_attr("worker", worker_name())
        try:
            _price_first(env, trial, recipe)
            built = build(env.parent.model, recipe, _trial_tuning(env, trial, recipe), env.header)
        except CancelledError:
            raise
        except LabError as err:  # e.g. a sparsity that empties a layer: a recipe that cannot be, not a crash
            trial.set_constraint("accuracy", 1.0)  # the sampler ranks it with the worst
            trial.set_user_attr("note", f"not possible: {err}")
            raise optuna.TrialPruned(str(err)) from None
        val_acc = accuracy(built.model, env.parent.data.x_val.to(built.input_dtype), env.parent.data.y_val)
        drop = 100 * (env.base_val - val_acc)
        run, cost = _store_trial(env, trial, recipe, built, val_acc)
        trial.set_constraint("cost", cost / env.target.ratio - 1)
        trial.set_constraint("accuracy", (drop - env.config.max_drop) / 10)
        for key, value in (("run_id", run["id"]), ("cost", cost), ("val_accuracy", val_acc), ("val_drop_pt", drop)):
            trial.set_user_attr(key, value)
        done = len(trial.study.get_trials(deepcopy=False, states=FINISHED)) + 1
        env.ctx.report(min(0.15 + 0.8 * done / env.config.trials, 0.95),
                       f"trial {trial.number}: {env.target.phrase(cost)}, val acc {val_acc:.3f} ({recipe.label()})")
        return val_acc, cost
    return objective


def priors(config: PlanConfig, space: Space) -> list[dict]:
    """The target's first recipes (target.py), a third of the budget at most, as this space's parameters."""
    return [seed_params(p, space) for p in config.parsed_target().prior()[:max(1, config.trials // 3)]]


def open_study(config: PlanConfig, space: Space, url: str) -> optuna.Study:
    """Create an image plan's study (seeded with the target's prior recipes) or join an existing one."""
    return open_plan_study(config, url, list(DIRECTIONS), priors(config, space))


def prepare(config: PlanConfig, ctx: RunContext, unavailable: list[dict]) -> Env:
    parent = prepare_parent(config, ctx)
    data, device = parent.data, _device(config)
    ctx.report(0.14, "Computing the parent's answers (the teacher's soft targets)")
    teacher = predict(parent.model, data.x_train, device).to(device)
    spec = parent.run["model"]
    return Env(config, config.parsed_target(), bound_for(parent.record, config.max_drop, config.max_ppl_increase),
               parent, _space(config, unavailable), Tuning(data, device, config.lr, config.seed, teacher,
                                                           ctx.should_cancel),
               accuracy(parent.model, data.x_val, data.y_val),
               file_header(spec, data.input_shape, data.num_classes, data.name), ctx)


IMAGE_PLANNER = Planner(prepare=prepare, directions=DIRECTIONS, priors=priors, objective=make_objective,
                        device=_device, verifying="Verifying the winner: timing it with the parent again",
                        verified=lambda best, row: {"accuracy_drop_pt": best["quality_loss"]})

"""The image-classification task: accuracy (higher is better, changes in points), one timed phase (a batch of
images), every lab. Its hooks build, train, measure and time image classifiers for the labs' one loop each."""
from __future__ import annotations

import statistics

import torch
from torch import nn

from ..core.behaviour import compact_predictions
from ..core.data import Dataset, load_dataset
from ..core.measure import count_macs, count_params, effective_macs, measure, serialized_size
from ..core.models import build_model, format_spec, parse_spec
from ..core.paired import split_gain, time_pair
from ..core.timing import machine_fingerprint
from ..core.train import cache_key, predict, resolve_device, train
from ..errors import LabError
from ..paths import checkpoints_dir
from ..techniques.distill import check_compatible, distill_student, train_plain_student
from ..techniques.prune import METHODS as PRUNE_METHODS, prune_model
from ..techniques.quantize import METHODS as QUANT_METHODS, availability
from ..search.space import IMAGE
from .base import Arm, Quality, Task, Training, register_task


def predictions_on_test(model: nn.Module, data: Dataset, input_dtype: torch.dtype = torch.float32) -> dict:
    """The model's answers on the test split, stored with its run so that any two runs can be compared
    later (`diff`) without loading either model."""
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    with torch.no_grad():  # predict() keeps autograd on; a whole test split would hold its graph
        return compact_predictions(predict(model, data.x_test.to(input_dtype), device))


def _block_s(ctx) -> float:
    return max(0.01, ctx.latency_time / 6)


class ImageTask(Task):
    name = "image"
    title = "image classification"
    quality = Quality("accuracy", "test accuracy", True, "pt", "accuracy drop")
    phases = (None,)
    labs = frozenset({"train", "prune", "quantize", "distill", "search", "plan", "demo", "pipeline", "upload"})
    generates = False              # its models continue a prompt (`generate`)
    compressed_files = True       # the .cldc codec (labs.io.compressed) encodes its models
    search_data = IMAGE
    default_model = "lenet5"
    model_noun = "an image model"
    data_noun = "an image data set"
    model_hint = "pick an image model (lenet5, cnn, mlp, or tv.NAME)"
    data_hint = "pick an image data set (digits, mnist, or imagefolder:PATH for your own)"
    default_prune_method = "global_l1"
    finetune_epochs = 5          # after pruning: the sweep's children recover within a few epochs on digits
    search_constraints = ("max_params", "max_macs")

    def owns_dataset(self, name: str) -> bool:
        return True  # the default task: any data set no other task claims

    def owns_model(self, name: str) -> bool:
        return True

    # --- baselines -------------------------------------------------------------------------------------------
    def training(self, config, spec: dict, ctx) -> Training:
        """The key needs no data: a cached baseline is found before the data set is even loaded (instant)."""
        train_config = config.train_config()
        return Training(key=cache_key(config.dataset, spec, train_config), train_config=train_config)

    def reusable(self, run: dict, config) -> bool:
        return run["config"].get("latency_batch") == config.latency_batch

    def reused(self, ctx, config, model: nn.Module, run: dict) -> dict:
        """A stored baseline's latency counts only on the machine that timed it: elsewhere it is re-timed."""
        here = {machine_fingerprint(e["device"], e.get("threads"))["id"] for e in run["record"]["latency"]}
        timed_on = {e.get("machine") for e in run["record"]["latency"]}
        if timed_on <= here:
            return run
        ctx.report(0.5, f"Re-timing stored baseline run {run['id']}: it was timed on another machine")
        data = load_dataset(config.dataset, config.data_dir, config.download)
        ctx.store.update_run(run["id"], record=self.measure(model, data, ctx, config.latency_batch))
        return ctx.store.get_run(run["id"])

    def train_baseline(self, config, spec: dict, training: Training, data, ctx) -> tuple[nn.Module, list, dict]:
        """(model, history, run config fields); trained weights are cached by key in the lab's checkpoints."""
        dev = resolve_device(config.device, data)
        torch.manual_seed(config.seed)
        net = build_model(spec, data.input_shape, data.num_classes)
        checkpoint = checkpoints_dir() / f"baseline_{training.key}.pt"
        if checkpoint.exists():
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
            net.load_state_dict(saved["state_dict"])
            history = saved["history"]
            ctx.report(0.8, "Loaded cached baseline weights")
        else:
            history = train(net, data, training.train_config, dev,
                            on_epoch=ctx.on_epoch(0.0, 0.8, "Training: epoch"), should_cancel=ctx.should_cancel,
                            on_batch=ctx.on_batch(0.0, 0.8, "Training: epoch"))
            net.cpu()
            torch.save({"state_dict": net.state_dict(), "history": history}, checkpoint)
        ctx.report(0.85, "Measuring accuracy, size, MACs and latency")
        net.cpu().eval()
        return net, history, {**training.train_config.to_dict(), "cache_key": training.key,
                              "train_device": str(dev)}

    def baseline_label(self, spec: dict, config, training: Training) -> str:
        return f"{format_spec(spec)} baseline ({config.epochs} ep, seed {config.seed})"

    def baseline_extra(self, model: nn.Module, data, history: list) -> dict:
        return {"history": history, "predictions": predictions_on_test(model, data)}

    # --- measuring ---------------------------------------------------------------------------------------------
    def measure(self, model: nn.Module, data, ctx, latency_batch: int, context: int | None = None,
                input_dtype: torch.dtype = torch.float32) -> dict:
        record = measure(model, data, latency_batch=latency_batch, exclusive=ctx.exclusive,
                         min_run_time=ctx.latency_time, input_dtype=input_dtype)
        return {**record, "task": self.name}

    def example_input(self, data, context: int | None = None) -> torch.Tensor:
        return data.x_test[:1]

    def parent_fields(self, model: nn.Module, run: dict, data, ctx, latency_batch: int) -> dict:
        """What a Parent holds besides its model, run and data: its record measured in this process."""
        ctx.report(0.12, "Measuring the parent model in this process")
        return {"record": self.measure(model, data, ctx, latency_batch), "latency_batch": latency_batch}

    def measure_child(self, ctx, parent, model: nn.Module, child, reloaded: nn.Module) -> dict:
        """`reloaded` is the model as stored (TorchScript for FX int8 graphs, which is what gets timed)."""
        record = self.measure(reloaded, parent.data, ctx, parent.latency_batch, input_dtype=child.input_dtype)
        if reloaded is not model:  # a TorchScript module's packed int8 weights are not in its state dict: counted
            # (and sized, as before) on the module as converted, which holds the same weights
            params, nonzero = count_params(model)
            size, gz = serialized_size(model)
            record.update(params=params, nonzero_params=nonzero, sparsity=1 - nonzero / params if params else 0.0,
                          size_bytes=size, gzip_bytes=gz)
        if child.float_model is not None:  # quantization changes the arithmetic's precision, not its count
            record["macs"] = count_macs(child.float_model, parent.data.input_shape)
            record["effective_macs"] = effective_macs(child.float_model, parent.data.input_shape)
            record["macs_note"] = "counted on the float model: the int8 kernels do the same multiply-accumulates"
        if record.get("effective_macs"):
            record["speedup_predicted_macs"] = parent.record["macs"] / record["effective_macs"]
        return record

    def paired_timings(self, ctx, parent, model: nn.Module, child, record: dict) -> list[dict]:
        """The child against its parent, interleaved, at each (device, batch) its record has a latency for."""
        timings = []
        for entry in record["latency"]:
            if not entry.get("median_ms"):
                continue  # e.g. int8 kernels exist on the CPU only
            timings.append(time_pair(parent.model, model, parent.data.input_shape, entry["batch_size"],
                                     device=entry["device"], dtype_b=child.input_dtype, block_s=_block_s(ctx)))
        return timings

    def child_extra(self, ctx, parent, model: nn.Module, child, under: dict) -> dict:
        """The child's answers on the test split, how many differ from the run it is stored under, and for real
        static int8 the split of its gain into fusing layers and int8."""
        extra = dict(child.extra)
        extra["predictions"] = predictions_on_test(model, parent.data, child.input_dtype)
        before = _predictions_of(ctx, parent, under)
        if before is not None:  # "-0.3 pt" hides churn: how many answers differ from the parent's
            extra["flip_rate"] = sum(a != b for a, b in zip(before["label"], extra["predictions"]["label"])) / len(
                parent.data.y_test)
        if child.float_model is not None and child.extra.get("real_int8") and child.method == "static_int8":
            extra["speedup_split"] = split_gain(parent.model, model, parent.data.input_shape, parent.latency_batch,
                                                _block_s(ctx))
        return extra

    def check_distill(self, config) -> None:
        parse_spec(config.student)
        if not str(config.teacher).isdigit():
            parse_spec(config.teacher)  # an unknown teacher fails before any training
        if not config.seeds or not config.temperatures:
            raise LabError("Give at least one seed and one temperature")

    def quality_change(self, record: dict, baseline: dict) -> tuple[str, dict]:
        """'+0.8 pt accuracy', and the record field it comes from."""
        delta_pt = 100 * (record["accuracy"] - baseline["accuracy"])
        return f"{delta_pt:+.1f} pt accuracy".replace("-", "\u2212"), {"accuracy_delta_pt": delta_pt}

    def control(self, parent, training: dict | None) -> None:
        return None  # an image student's fair reference is the distill lab's own arm (same seed, data, epochs)

    def versus_control(self, record: dict, control: dict) -> dict:
        return {}

    # --- lab hooks: what the prune, quantize and distill labs' one loop each asks ---------------------------------
    def check_prune_method(self, method: str) -> None:
        _check_methods_of(self, method, language=False)

    def prune_configs(self, config) -> list:
        return config.prune_configs()

    def prune_check(self, method: str):
        return None

    def prune_name(self, method: str, prune_config) -> str:
        return f"{method} {prune_config.sparsity:.0%}"

    def prune_child(self, parent, config, prune_config, step, ctx, name: str) -> tuple[nn.Module, dict, str, dict]:
        """(pruned model, its run's extra, its label, the result's fields)."""
        device = config.device if config.device not in (None, "auto") else "cpu"
        pruned, report = prune_model(parent.model, parent.data, prune_config, device,
                                     progress=step.slice(0, 0.9).forward, should_cancel=ctx.should_cancel)
        step.report(0.95, "measuring")
        extra = {k: report[k] for k in ("sparsity", "structured", "layers", "finetune_history", "notes") if k in report}
        return pruned, extra, name, {"sparsity": prune_config.sparsity}

    def quantize_refusal(self, method: str, device: str) -> tuple[str, str | None]:
        """(where the method runs, why it cannot here or None)."""
        target = "cpu" if QUANT_METHODS[method].real_int8 else device  # torch.ao's int8 kernels exist on CPU only
        return target, availability(method, target)

    def quantize_data(self, parent):
        return parent.data  # static int8 calibrates on it

    def quantize_notes(self, parent, method: str, report: dict) -> dict:
        return report

    def teacher_baseline(self, config) -> dict:
        """The BaselineConfig fields of a teacher named by its spec: trained (or reused) on all labels."""
        return dict(dataset=config.dataset, model=config.teacher, epochs=config.teacher_epochs, device=config.device,
                    data_dir=config.data_dir, download=config.download, latency_batch=config.latency_batch)

    def check_teacher(self, model: nn.Module, data) -> None:
        check_compatible(model, data)

    def distill_arms(self, config, teacher) -> list[Arm]:
        """The students of each seed alone, then distilled at each temperature: a plain and a KD student of one
        seed start from the same weights."""
        spec = parse_spec(config.student)
        device = config.device if config.device not in (None, "auto") else "cpu"
        configs = config.distill_configs()
        arms = []
        jobs = [(None, s) for s in config.seeds] + [(t, s) for t in config.temperatures for s in config.seeds]
        for temp, seed in jobs:
            distill_config = configs[(temp or config.temperatures[0], seed)]
            label = (f"{format_spec(spec)} {'plain' if temp is None else f'KD T={temp:g}'} "
                     f"{config.label_fraction:.0%} labels, seed {seed}")
            arms.append(Arm("student_plain" if temp is None else "student_kd", label, seed, temp, spec,
                            {**distill_config.to_dict(), "student": spec, "teacher_run": teacher.run["id"],
                             "with_teacher": temp is not None},
                            {"temperature": temp, "seed": seed, "label_fraction": config.label_fraction},
                            _student_trainer(teacher, spec, distill_config, device, temp is not None)))
        return arms

    def distill_summary(self, config, teacher, results: dict) -> dict:
        plain, kd = results.get("student_plain", []), results.get("student_kd", [])
        plain_acc = [r["accuracy"] for r in plain]
        sweep = []
        for t in config.temperatures:
            kd_acc = [r["accuracy"] for r in kd if r["temperature"] == t]
            sweep.append({"temperature": t, "kd_mean": statistics.mean(kd_acc),
                          "plain_mean": statistics.mean(plain_acc),
                          "gap_closed": gap_closed(teacher.record["accuracy"], plain_acc, kd_acc)})
        return {"teacher": teacher.as_baseline(), "student_plain": plain, "student_kd": kd,
                "gap_closed": sweep[0]["gap_closed"], "sweep": sweep}

    def retime_pair(self, run_a: dict, model_a: nn.Module, model_b: nn.Module, data, *, phase: str | None,
                    batch_size: int | None, dtype_b: torch.dtype, device: str, rounds) -> dict:
        return time_pair(model_a, model_b, data.input_shape, batch_size or _record_batch(run_a), device=device,
                         dtype_b=dtype_b, rounds=rounds, block_s=0.05)


def gap_closed(teacher_acc: float, plain: list[float], kd: list[float]) -> float | None:
    """(mean KD - mean plain) / (teacher - mean plain): 1 = KD matched the teacher, 0 = no help."""
    gap = teacher_acc - statistics.mean(plain)
    return (statistics.mean(kd) - statistics.mean(plain)) / gap if abs(gap) > 1e-9 else None


def _student_trainer(teacher, spec: dict, distill_config, device: str, taught: bool):
    def train(step) -> tuple[nn.Module, list]:
        data = teacher.data
        torch.manual_seed(distill_config.seed)  # the plain and the KD student start from the same weights
        student = build_model(spec, data.input_shape, data.num_classes)
        if taught:
            return distill_student(teacher.model, student, data, distill_config, device, step.on_epoch(0, 0.9),
                                   step.should_cancel)
        return train_plain_student(student, data, distill_config, device, step.on_epoch(0, 0.9), step.should_cancel)
    return train


def _check_methods_of(task: Task, method: str, language: bool) -> None:
    """A language model's parent takes the language pruning methods, an image model's the others."""
    if PRUNE_METHODS[method].language != language:
        known = [n for n in PRUNE_METHODS.names() if PRUNE_METHODS[n].language == language]
        kind = "language" if language else "image"
        raise LabError(f"'{method}' does not prune {kind} models. For {kind} models: {', '.join(known)}.")


def _record_batch(run: dict) -> int:
    """The largest batch run A's record was timed at (the lab's throughput batch), else 256."""
    return max((e.get("batch_size") or 0 for e in (run.get("record") or {}).get("latency", [])), default=0) or 256


def _predictions_of(ctx, parent, up: dict) -> dict | None:
    """The stored answers of the run a child is stored under; a parent stored before runs kept their answers
    gets them computed once here (from the model in memory) and stored, so the next child reuses them."""
    stored = (up.get("extra") or {}).get("predictions")
    if stored is None and (up.get("extra") or {}).get("has_answers"):  # a listed run: its answers stay in the store
        stored = (ctx.store.get_run(up["id"]).get("extra") or {}).get("predictions")
    if stored and len(stored.get("label", [])) == len(parent.data.y_test):
        return stored
    if up["id"] != parent.run["id"]:
        return None  # an ancestor whose model is not in memory: no flip rate rather than a guess
    dtype = getattr(torch, (up.get("extra") or {}).get("input_dtype") or "float32", torch.float32)
    answers = predictions_on_test(parent.model, parent.data, dtype)
    parent.run["extra"] = {**(up.get("extra") or {}), "predictions": answers}
    ctx.store.update_run(up["id"], extra=parent.run["extra"])
    return parent.run["extra"]["predictions"]


IMAGE_TASK = register_task(ImageTask())

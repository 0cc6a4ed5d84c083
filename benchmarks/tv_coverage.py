"""What channel pruning (channel_l1 at 50%) and static int8 do to each torchvision classification model, on random
weights and random 3x32x32 images (batch 2; models that need a bigger side resize their input, see
compression/core/tv_models.py).

    python benchmarks/tv_coverage.py                 # the smallest model of each family; one JSON line
    python benchmarks/tv_coverage.py --all --write   # all of them, and docs/tv_coverage.md from the results

Each model runs in its own process (a 600M-parameter model, or a hang in a tracer, then costs only itself); each
row goes to stderr as a JSON line, and `--resume FILE` reuses such lines from an interrupted run. With --all the
smallest model of each family runs first, and --write rewrites the table after every model, so an interrupted
run still leaves every family covered and says which models it did not reach.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import _common

SHAPE = (3, 32, 32)
DOC = Path(__file__).resolve().parent.parent / "docs" / "tv_coverage.md"
TIMEOUT_S = 1200


def _first_line(err: Exception) -> str:
    """The message's reason: its first line, without the list of what is supported (the same in every row)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0].split(". It supports")[0][:300]


def one(name: str) -> dict:
    """Build, prune and quantize one model in this process; every outcome becomes a row, never an exception."""
    import warnings

    import torch

    import compression
    from compression.core.models import build_model

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    row = {"model": name}
    start = time.perf_counter()
    model = build_model(f"tv.{name}", SHAPE, 10).eval()
    row["side"] = getattr(model, "side", SHAPE[1])
    row["params"] = sum(p.numel() for p in model.parameters())
    data = (torch.randn(2, *SHAPE), torch.arange(2))
    x = torch.randn(2, *SHAPE)
    try:
        pruned = compression.prune(model, data, method="channel_l1", sparsity=0.5)
        with torch.no_grad():
            ok = pruned(x).shape == (2, 10)
        row["prune"] = "prunes" if ok else "wrong output shape"
        row["params_ratio"] = round(sum(p.numel() for p in pruned.parameters()) / row["params"], 3)
    except compression.LabError as err:
        row["prune"], row["prune_reason"] = "refused", _first_line(err)
    try:
        int8 = compression.quantize(model, data, method="static_int8", calibration_batches=1)
        with torch.no_grad():
            row["int8"] = "runs" if int8(x).shape == (2, 10) else "wrong output shape"
    except compression.LabError as err:
        row["int8"], row["int8_reason"] = "refused", _first_line(err)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def run_in_child(name: str) -> dict:
    try:
        done = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"model": name, "prune": f"did not finish in {TIMEOUT_S} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"model": name, "prune": "crashed", "prune_reason": tail}
    return json.loads(lines[-1])


def smallest_per_family(names: list[str]) -> list[str]:
    """The smallest model of each torchvision module (a family: one module's code, other widths and depths)."""
    import torchvision

    def size(name):
        return torchvision.models.get_model_weights(name).DEFAULT.meta.get("num_params", 0)
    smallest: dict[str, str] = {}
    for name in names:
        family = torchvision.models.get_model_builder(name).__module__
        if family not in smallest or size(name) < size(smallest[family]):
            smallest[family] = name
    return sorted(smallest.values())


def _imagenet_params(name: str) -> int:
    import torchvision
    return torchvision.models.get_model_weights(name).DEFAULT.meta.get("num_params", 0)


def write_doc(rows: list[dict]) -> None:
    import torch
    import torchvision

    count = {k: sum(r.get("prune", "").startswith(k) for r in rows) for k in ("prunes", "refused", "not run")}
    other = len(rows) - sum(count.values())
    lines = ["# Torchvision classification models: what channel pruning and int8 do", "",
             f"Written by `python benchmarks/tv_coverage.py --all --write` (torch {torch.__version__}, torchvision "
             f"{torchvision.__version__}): random weights, random 3x32x32 images, batch 2, 10 classes. Of "
             f"{len(rows)} models, {count['prunes']} prune, {count['refused']} are refused with a message naming "
             f"the layer, {count['not run']} were not run{f', {other} failed otherwise' if other else ''}. "
             "tests/test_tv_models.py checks the smallest model of each family on every test run. "
             "`side` is the input side the model runs at (smaller images are resized up to it). "
             "`params after` is the pruned model's share of the parameters.", "",
             "| model | side | params | channel_l1 50% | params after | static int8 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        prune = r.get("prune", "")
        if r.get("prune_reason"):
            prune += f": {r['prune_reason']}"
        int8 = r.get("int8", "")
        if r.get("int8_reason"):
            int8 += f": {r['int8_reason']}"
        params = f"{r['params'] / 1e6:.1f} M" if r.get("params") else ""
        lines.append(f"| tv.{r['model']} | {r.get('side', '')} | {params} | {prune} | "
                     f"{r.get('params_ratio', '')} | {int8} |")
    lines += ["", "How the harder families are handled (compression/techniques/prune.py, `ARCHITECTURES`):", "",
              "- ViT: `nn.MultiheadAttention` is pruned head by head (the same dims removed in every head, so the head "
              "count stays and each kept dim stays in its head); the class token and position embedding shrink with "
              "the embedding.",
              "- ShuffleNet: the channel shuffle is shown to Torch-Pruning as one opaque op that no channel crosses, so "
              "block insides prune and block outputs stay whole (about half the parameters go, not three quarters).",
              "- Swin and MaxViT: Torch-Pruning's tracer does not finish on their window attention (on swin_t it ran "
              "past 5 minutes and 20 GiB), so their MLPs lose hidden units alone (compression/techniques/"
              "prune_mlp.py) and attention and embedding widths stay; the run's notes say so.",
              "- static int8: `x.mean([2, 3])` on 1x1 int8 maps is rewritten to `mean(keepdim=True).flatten(1)` "
              "(ShuffleNet's channels_last rank error), and channels_last models are made contiguous first."]
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every model, not the smallest of each family")
    parser.add_argument("--write", action="store_true", help=f"write {DOC.name} from the results")
    parser.add_argument("--resume", help="a file of JSON rows (this script's stderr) whose models are not rerun")
    parser.add_argument("--max-params", type=float, help="skip (and say so) models with more parameters")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    from compression.core.tv_models import tv_names
    first = smallest_per_family(tv_names())
    names = first + [n for n in tv_names() if n not in first] if args.all else first
    done = {}
    for line in Path(args.resume).read_text().splitlines() if args.resume else []:
        if line.startswith("{"):
            row = json.loads(line)
            done[row["model"]] = row
    rows = {n: {"model": n, "prune": "not run yet"} for n in names}
    for name in names:
        if name in done:
            rows[name] = done[name]
        elif args.max_params and _imagenet_params(name) > args.max_params:
            rows[name] = {"model": name, "params": _imagenet_params(name),
                          "prune": f"not run here (more than --max-params {args.max_params / 1e6:.0f} M)"}
        else:
            rows[name] = run_in_child(name)
        print(json.dumps(rows[name]), file=sys.stderr, flush=True)
        if args.write:
            write_doc([rows[n] for n in sorted(rows)])
    rows = list(rows.values())
    _common.emit({"benchmark": "tv_coverage", "models": len(rows),
                  "prune_ok": sum(r.get("prune") == "prunes" for r in rows),
                  "int8_ok": sum(r.get("int8") == "runs" for r in rows),
                  "refused": sorted(r["model"] for r in rows if r.get("prune", "").startswith("refused")),
                  "not_run": sorted(r["model"] for r in rows if r.get("prune", "").startswith("not run")),
                  "failed": sorted(r["model"] for r in rows if r.get("prune") not in ("prunes", None)
                                   and not r["prune"].startswith(("refused", "not run")))})


if __name__ == "__main__":
    main()

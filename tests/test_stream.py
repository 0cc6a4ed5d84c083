"""Image folders larger than memory: splits kept on disk (FolderImages) and decoded by batch through a DataLoader
with worker processes. Real PNG files, torchvision's ImageFolder, real worker processes; the tests force streaming
with &stream=1, or lower the in-memory limit, instead of writing gigabytes."""

import numpy as np
import pytest
import torch

from compression import LabError, build_model, load_dataset, parse_spec
from compression.core import data as data_module
from compression.core.stream import FolderImages, in_batches, in_order, rows
from compression.core.train import TrainConfig, predict, train
from compression.errors import CancelledError
from compression.labs.context import RunContext

from test_image_folder import cli_json, write_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("stream") / "pics", per_class=20)


def test_a_streamed_folder_holds_the_same_numbers_as_the_in_memory_one(folder):
    held = load_dataset(f"imagefolder:{folder}?size=16")
    streamed = load_dataset(f"imagefolder:{folder}?size=16&stream=1")
    assert not held.streamed and streamed.streamed and streamed.summary()["streamed"] is True
    assert isinstance(streamed.x_train, FolderImages) and streamed.input_shape == held.input_shape == (3, 16, 16)
    assert streamed.class_names == held.class_names
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(streamed, f"y_{split}"), getattr(held, f"y_{split}"))
        assert torch.equal(getattr(streamed, f"x_{split}")[:], getattr(held, f"x_{split}"))
    # every way the labs index a split gives what the tensor gives
    x, s = held.x_train, streamed.x_train
    mask = held.y_train == 2
    assert torch.equal(s[5], x[5]) and torch.equal(s[torch.tensor(5)], x[5]) and torch.equal(s[np.int64(5)], x[5])
    assert torch.equal(s[np.array([2, 6])], x[[2, 6]]) and torch.equal(s[-1], x[-1])
    assert torch.equal(s[3:9], x[3:9]) and torch.equal(s[[7, 1]], x[[7, 1]])
    assert torch.equal(s[torch.tensor([4, 0, 4])], x[torch.tensor([4, 0, 4])])
    assert torch.equal(s[mask], x[mask]) and s[[]].shape == (0, 3, 16, 16)
    assert isinstance(rows(s, mask), FolderImages) and torch.equal(rows(s, mask)[:], x[mask])
    assert s.to(torch.float16)[:2].dtype == torch.float16 and s.to("cpu") is s and len(s) == len(x)
    # whole passes: in order, and in a shuffled order with the indices that go with each batch
    assert torch.equal(torch.cat(list(in_batches(s, 7))), x)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    for (i_s, b_s), (i_x, b_x) in zip(in_order(s, order, 10), in_order(x, order, 10), strict=True):
        assert torch.equal(i_s, i_x) and torch.equal(b_s, b_x)


def test_training_on_a_streamed_folder_matches_training_in_memory(folder):
    histories = []
    for name in (f"imagefolder:{folder}?size=16", f"imagefolder:{folder}?size=16&stream=1"):
        data = load_dataset(name)
        torch.manual_seed(0)
        model = build_model(parse_spec("lenet5"), data.input_shape, data.num_classes)
        batches = []
        history = train(model, data, TrainConfig(epochs=2, batch_size=16, augment=True), on_batch=batches.append)
        histories.append([(h["train_loss"], h["val_accuracy"]) for h in history])
        assert [(b["epoch"], b["batch"]) for b in batches] == [(e, b) for e in (1, 2) for b in (1, 2, 3, 4)]
        assert batches[-1] == {"epoch": 2, "epochs": 2, "batch": 4, "batches": 4}
        logits = predict(model, data.x_test)
        assert logits.shape == (len(data.y_test), 4)
    assert histories[0] == histories[1]  # same images, same order, same augmentation: the same run


def test_a_folder_larger_than_the_memory_limit_streams_instead_of_failing(folder, monkeypatch):
    needed = 80 * 3 * 12 * 12 * 4  # 80 images decoded at 12x12 as float32
    monkeypatch.setattr(data_module, "MAX_IN_MEMORY_BYTES", needed - 1)
    assert data_module.in_memory_limit() == needed - 1
    data = load_dataset(f"imagefolder:{folder}?size=12")
    assert data.streamed and len(data.y_train) + len(data.y_val) + len(data.y_test) == 80
    monkeypatch.setattr(data_module, "MAX_IN_MEMORY_BYTES", needed)
    assert not load_dataset(f"imagefolder:{folder}?size=12&stream=0").streamed


def test_streaming_keeps_the_one_sentence_errors_and_can_be_cancelled(tmp_path, folder):
    with pytest.raises(LabError, match="stream=1"):
        load_dataset(f"imagefolder:{folder}?stream=yes")
    root = tmp_path / "corrupt"
    write_folder(root / "train", per_class=10)
    write_folder(root / "test", per_class=3)
    (root / "test" / "class_3" / "1.png").write_bytes(b"not a png")
    data = load_dataset(f"imagefolder:{root}?size=8&stream=1")  # the statistics come from train/ alone
    with pytest.raises(LabError) as caught:  # decoded in a DataLoader worker process: still one sentence
        predict(torch.nn.Flatten(), data.x_test)
    assert str(caught.value).endswith("1.png is not an image PIL can read (corrupt, or another format).")
    assert "Traceback" not in str(caught.value) and "\n" not in str(caught.value)
    for i in (2, 3):  # one image a class goes to the val split: corrupt two, so one is a training image
        (root / "train" / "class_0" / f"{i}.png").write_bytes(b"nor this")
    with pytest.raises(LabError, match="[23].png is not an image"):  # a training image: named when loading
        load_dataset(f"imagefolder:{root}?size=9&stream=1")  # another size: a fresh load, not the cache
    streamed = load_dataset(f"imagefolder:{folder}?size=16&stream=1")
    model = build_model(parse_spec("lenet5"), streamed.input_shape, streamed.num_classes)
    steps = []
    with pytest.raises(CancelledError):
        train(model, streamed, TrainConfig(epochs=3, batch_size=8), on_batch=steps.append,
              should_cancel=lambda: len(steps) >= 3)
    assert len(steps) == 3  # stopped within the first epoch, at the next batch


def test_the_run_context_reports_batches_as_a_fraction_of_its_slice():
    events = []
    ctx = RunContext(progress=events.append).slice(0.5, 1.0, "train")
    report = ctx.on_batch(0.0, 0.8, "epoch", every_s=0)
    report({"epoch": 2, "epochs": 4, "batch": 5, "batches": 10})
    assert events[-1]["message"] == "[train] epoch 2/4, batch 5/10"
    assert events[-1]["fraction"] == pytest.approx(0.5 + 0.5 * 0.8 * (1.5 / 4))
    throttled = ctx.on_batch(every_s=60)
    throttled({"epoch": 1, "epochs": 1, "batch": 1, "batches": 2})
    assert len(events) == 1  # within the minute: not another store write


def test_cli_trains_on_a_streamed_folder_then_prunes_and_diffs_it(folder, lab_home, capsys):
    name = f"imagefolder:{folder}?size=16&stream=1"
    run = cli_json(capsys, "train", "--dataset", name, "--model", "cnn:width=16", "--epochs", "2",
                   "--latency-batch", "16")
    assert run["dataset"] == name and 0.25 < run["accuracy"] <= 1 and run["n_test"] == 16
    child = cli_json(capsys, "prune", "--from", str(run["run_id"]), "--method", "channel_l1", "--sparsity", "0.5",
                     "--finetune-epochs", "1", "--latency-batch", "16")["results"][0]
    assert child["parent_id"] == run["run_id"] and child["params"] < run["params"]
    diffed = cli_json(capsys, "diff", str(run["run_id"]), str(child["run_id"]))
    assert sum(row["n"] for row in diffed["per_class"]) == 16

"""The training loop: learns, is seeded, stops on divergence, and can be cancelled."""
from dataclasses import replace

import pytest
import torch

from compression import CancelledError, DivergedError, LabError, TrainConfig, accuracy, build_model, train
from compression.core.train import training_threads


def test_training_learns_and_reports_each_epoch(synthetic):
    torch.manual_seed(0)
    model = build_model("mlp:hidden=32", synthetic.input_shape, synthetic.num_classes)
    before = accuracy(model, synthetic.x_test, synthetic.y_test)
    seen = []
    history = train(model, synthetic, TrainConfig(epochs=5, seed=0), on_epoch=seen.append)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5] and seen == history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    after = accuracy(model, synthetic.x_test, synthetic.y_test)
    assert after > 0.9 and after > before + 0.3


def test_training_is_seeded(synthetic):
    def run(seed):
        torch.manual_seed(seed)
        model = build_model("mlp:hidden=16", synthetic.input_shape, synthetic.num_classes)
        train(model, synthetic, TrainConfig(epochs=2, seed=seed))
        return torch.cat([p.flatten() for p in model.parameters()])
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_nan_loss_stops_with_a_clear_error(synthetic):
    model = build_model("mlp:hidden=16", synthetic.input_shape, synthetic.num_classes)
    nan_loss = lambda m, logits, y, idx: logits.sum() * float("nan")  # noqa: E731
    with pytest.raises(DivergedError, match="diverged"):
        train(model, synthetic, TrainConfig(epochs=1), loss_fn=nan_loss)


def test_huge_learning_rate_diverges_with_a_message(synthetic):
    model = build_model("mlp:hidden=64", synthetic.input_shape, synthetic.num_classes)
    with pytest.raises(DivergedError, match="lower learning rate"):
        train(model, synthetic, TrainConfig(epochs=20, lr=1e12, optimizer="sgd", schedule="constant"))


def test_cancel_stops_training(synthetic):
    model = build_model("mlp:hidden=16", synthetic.input_shape, synthetic.num_classes)
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) > 3
    with pytest.raises(CancelledError):
        train(model, synthetic, TrainConfig(epochs=50), should_cancel=should_cancel)
    assert len(calls) == 4


@pytest.mark.parametrize("bad,message", [
    (dict(epochs=-1), "epochs must be >= 0, got -1"), (dict(batch_size=0), "batch size must be >= 1, got 0"),
    (dict(lr=0), "learning rate must be a positive number, got 0"),
    (dict(lr=float("nan")), "learning rate must be a positive number, got nan"),
    (dict(optimizer="lion"), "Unknown optimizer 'lion'. Known: adam, sgd"),
    (dict(label_smoothing=1.0), r"label smoothing must be in \[0, 1\), got 1.0"),
])
def test_bad_config_is_refused(bad, message):
    with pytest.raises(LabError, match=message):
        TrainConfig(**bad)


def test_small_batches_train_on_one_thread_and_the_setting_comes_back(synthetic):
    wide = replace(synthetic, x_train=torch.zeros(len(synthetic.y_train), 3, 64, 64))
    assert training_threads(synthetic, TrainConfig(), torch.device("cpu")) == 1
    assert training_threads(wide, TrainConfig(), torch.device("cpu")) is None  # 32 x 3x64x64: worth threads
    assert training_threads(synthetic, TrainConfig(), torch.device("cuda")) is None
    before = torch.get_num_threads()
    seen = []
    model = build_model("mlp:hidden=8", synthetic.input_shape, synthetic.num_classes)
    train(model, synthetic, TrainConfig(epochs=1), on_epoch=lambda _: seen.append(torch.get_num_threads()))
    assert seen == [1] and torch.get_num_threads() == before

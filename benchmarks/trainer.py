"""Our in-memory training loop vs the textbook DataLoader loop: same data, model, batch, epochs.

Prints one JSON line: samples/s of each and `ratio` = ours / DataLoader (goal: >= 3 on digits).
"""
import time

import _common
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from compression import TrainConfig, build_model, load_dataset, train

EPOCHS, BATCH, MODEL = 5, 32, "lenet5"


def textbook_loop(data, seed):
    torch.manual_seed(seed)
    model = build_model(MODEL, data.input_shape, data.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=TrainConfig.lr, weight_decay=TrainConfig.weight_decay)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True)
    model.train()
    for _ in range(EPOCHS):
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb, label_smoothing=TrainConfig.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def ours(data, seed):
    torch.manual_seed(seed)
    model = build_model(MODEL, data.input_shape, data.num_classes)
    train(model, data, TrainConfig(epochs=EPOCHS, batch_size=BATCH, seed=seed))


def loader_only(data, seed):
    """Just iterating the DataLoader: the most any loop can save by not using one."""
    torch.manual_seed(seed)
    for _ in range(EPOCHS):
        for _batch in DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True):
            pass


def samples_per_s(fn, data, repeats=3):
    times = []
    for seed in range(repeats):  # interleaved by the caller's order; best of N resists noise
        start = time.perf_counter()
        fn(data, seed)
        times.append(time.perf_counter() - start)
    return EPOCHS * len(data.y_train) / min(times)


if __name__ == "__main__":
    data = load_dataset("digits")
    ours(data, 0)  # warm-up both paths once
    textbook_loop(data, 0)
    ours_sps = samples_per_s(ours, data)
    loader_sps = samples_per_s(textbook_loop, data)
    iterate_sps = samples_per_s(loader_only, data)
    _common.emit({"benchmark": "trainer", "dataset": "digits", "model": MODEL, "batch_size": BATCH,
                  "epochs": EPOCHS, "device": "cpu", "ours_samples_per_s": round(ours_sps),
                  "dataloader_samples_per_s": round(loader_sps), "ratio": round(ours_sps / loader_sps, 2),
                  "dataloader_iteration_only_samples_per_s": round(iterate_sps),
                  "dataloader_share_of_textbook_time": round(loader_sps / iterate_sps, 3),
                  "note": "ours includes a validation pass per epoch; the DataLoader loop does none"})

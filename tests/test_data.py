"""Data registry: the embedded default, the synthetic set, and torchvision's real loaders on tiny files."""
import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch

from compression import DatasetNotFoundError, UnknownNameError, list_datasets, load_dataset


def test_digits_is_the_real_embedded_set_with_a_fixed_split(digits):
    from sklearn.datasets import load_digits
    assert len(digits.y_train) + len(digits.y_val) + len(digits.y_test) == len(load_digits().target) == 1797
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert abs(len(digits.y_test) / 1797 - 0.2) < 0.01
    # standardized on the training split only
    assert abs(digits.x_train.mean().item()) < 1e-4 and abs(digits.x_train.std().item() - 1) < 1e-3
    # the split is fixed: reloading from scratch gives the same test set
    from compression.core.data import DATASETS
    again = DATASETS.get("digits")(data_dir=None, download=False)
    assert torch.equal(again.y_test, digits.y_test) and torch.equal(again.x_test, digits.x_test)


def test_splits_are_disjoint(digits):
    """The splits partition the 1,797 images: each original image is in exactly one split, once. scikit-learn's
    digits has no two equal images (1,797 distinct), so an image's pixels identify its row."""
    from collections import Counter

    from sklearn.datasets import load_digits
    bunch = load_digits()
    original = Counter(zip(map(tuple, bunch.images.reshape(len(bunch.images), -1).astype(int).tolist()),
                           bunch.target.tolist()))
    assert len(original) == 1797  # no duplicates: a shared image across splits would be a copied row
    # pixels are 0..16; one affine standardisation for every split maps each level to one float, so the sorted
    # distinct floats are the 17 levels in order, and bucketize gives each pixel its original integer back
    pixels = torch.cat([x.flatten() for x in (digits.x_train, digits.x_val, digits.x_test)])
    levels = torch.unique(pixels)
    assert len(levels) == 17
    train, val, test = (Counter(zip(map(tuple, torch.bucketize(x.flatten(1), levels).tolist()), y.tolist()))
                        for x, y in ((digits.x_train, digits.y_train), (digits.x_val, digits.y_val),
                                     (digits.x_test, digits.y_test)))
    shared = {"train & val": len(train.keys() & val.keys()), "train & test": len(train.keys() & test.keys()),
              "val & test": len(val.keys() & test.keys())}
    assert shared == {"train & val": 0, "train & test": 0, "val & test": 0}
    together = train + val + test  # and together they are the data set: each row once, its label kept
    assert (sum((original - together).values()), sum((together - original).values())) == (0, 0)  # (lost, extra)


def test_synthetic_is_small_and_balanced(synthetic):
    """400 examples, 100 per class (y = i % 4), one seeded permutation cut 240/80/80 (not stratified). So the
    whole set is exactly balanced, and each split's class counts are hypergeometric: mean 60 (sd 4.3) in train,
    20 (sd 3.5) in val and test; within 3 sd of the mean says the split was not sorted by class."""
    assert synthetic.num_classes == 4
    counts = [torch.bincount(y, minlength=4) for y in (synthetic.y_train, synthetic.y_val, synthetic.y_test)]
    assert [len(y) for y in (synthetic.y_train, synthetic.y_val, synthetic.y_test)] == [240, 80, 80]
    assert (counts[0] + counts[1] + counts[2]).tolist() == [100] * 4
    for count, mean, sd in zip(counts, (60, 20, 20), (4.3, 3.5, 3.5)):
        assert ((count - mean).abs() <= 3 * sd).all(), counts


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as err:
        load_dataset("imagenet")
    for name in ("digits", "mnist", "cifar10", "synthetic"):
        assert name in str(err.value)
    assert set(list_datasets()) >= {"digits", "mnist", "fashion_mnist", "cifar10", "synthetic"}


def _write_idx(path, array: np.ndarray):
    """The MNIST IDX format: big-endian magic (dtype 0x08 = uint8, ndim), then dims, then data."""
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_formats_load_through_torchvision(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        images = rng.integers(0, 256, size=(n, 28, 28))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    data = load_dataset(name, data_dir=tmp_path)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert len(data.y_train) + len(data.y_val) == 50 and len(data.y_test) == 20
    assert data.y_test.tolist() == [i % 10 for i in range(20)]  # test labels in file order


def write_tiny_cifar(root, monkeypatch, per_batch=4, test=6):
    """CIFAR-10's python format (five training batches, a test batch, the meta file) with a few random images,
    and torchvision's md5 table pointed at them (it checks each file against the real CIFAR-10)."""
    import torchvision

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    md5 = {}

    def dump(name, obj):
        blob = pickle.dumps(obj)  # files this test writes itself; torchvision unpickles them
        (folder / name).write_bytes(blob)
        md5[name] = hashlib.md5(blob).hexdigest()

    for i in range(1, 6):
        dump(f"data_batch_{i}", {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                                 "labels": [(i + k) % 10 for k in range(per_batch)]})
    dump("test_batch", {"data": rng.integers(0, 256, (test, 3072), dtype=np.uint8), "labels": list(range(test))})
    dump("batches.meta", {"label_names": CIFAR_NAMES})
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5["batches.meta"]})


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_cifar10_format_loads_through_torchvision(tmp_path, monkeypatch):
    write_tiny_cifar(tmp_path, monkeypatch)
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert data.input_shape == (3, 32, 32)
    assert data.class_names == tuple(CIFAR_NAMES)
    assert len(data.y_test) == 6 and len(data.y_train) + len(data.y_val) == 20


def test_missing_dataset_says_where_to_put_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", data_dir=tmp_path / "empty")
    message = str(err.value)
    assert str(tmp_path / "empty") in message and "download" in message

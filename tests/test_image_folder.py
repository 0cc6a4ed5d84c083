"""imagefolder:PATH data sets: real PNG files written here, read by torchvision's ImageFolder, split, resized,
standardised; and issue 14's CLI check: train tv.resnet18 on such a folder, then prune it from the stored run."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from compression import DatasetNotFoundError, LabError, load_dataset
from compression.cli import main
from compression.labs.configs import BaselineConfig

from conftest import ROOT, cli_env

COLOURS = [(230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30)]


def write_folder(root, per_class=20, size=(24, 20), classes=COLOURS):
    """One subfolder per class of noisy PNGs tinted with the class's colour (learnable, not trivial)."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.random((*size, 3)) * 120 + np.array(colour) * 0.5
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def test_a_flat_folder_is_split_stratified_resized_and_standardised(tmp_path):
    write_folder(tmp_path / "shapes")
    data = load_dataset(f"imagefolder:{tmp_path / 'shapes'}")
    assert data.input_shape == (3, 32, 32) and data.class_names == ("class_0", "class_1", "class_2", "class_3")
    for y, per_class in ((data.y_train, 14), (data.y_val, 2), (data.y_test, 4)):  # 70/10/20 of each class
        assert torch.bincount(y, minlength=4).tolist() == [per_class] * 4
    assert data.x_train.mean((0, 2, 3)).abs().max() < 1e-4  # standardised on the training split
    assert torch.allclose(data.x_train.std((0, 2, 3)), torch.ones(3), atol=1e-3)
    # the red channel is brightest for class 0 in the file: still so after resizing and standardising
    red = data.x_train[:, 0].mean((1, 2))
    assert red[data.y_train == 0].mean() > red[data.y_train == 1].mean()
    assert load_dataset(f"imagefolder:{tmp_path / 'shapes'}?size=16").input_shape == (3, 16, 16)


def test_train_val_test_subfolders_are_used_as_given(tmp_path):
    root = tmp_path / "given"
    write_folder(root / "train", per_class=10)
    write_folder(root / "test", per_class=3)
    data = load_dataset(f"imagefolder:{root}")
    assert len(data.y_test) == 12  # test/ exactly as given
    assert len(data.y_train) + len(data.y_val) == 40 and torch.bincount(data.y_val).tolist() == [1] * 4


def test_adding_images_is_seen_without_a_restart(tmp_path):
    root = write_folder(tmp_path / "grows", per_class=10)
    before = len(load_dataset(f"imagefolder:{root}").y_train)
    write_folder(root, per_class=20)
    assert len(load_dataset(f"imagefolder:{root}").y_train) > before


def test_bad_folders_give_one_clear_sentence(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not found"):
        load_dataset(f"imagefolder:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabError, match="not an image folder"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    root = write_folder(tmp_path / "corrupt", per_class=10)
    (root / "class_1" / "9.png").write_bytes(b"not a png")
    with pytest.raises(LabError, match="9.png is not an image"):
        load_dataset(f"imagefolder:{root}")
    with pytest.raises(LabError, match="size=N"):
        load_dataset(f"imagefolder:{root}?size=big")
    with pytest.raises(LabError, match="Unknown dataset 'imagenet'.*imagefolder:PATH"):
        BaselineConfig(dataset="imagenet")
    assert BaselineConfig(dataset=f"imagefolder:{root}").dataset == f"imagefolder:{root}"  # a family name is known


def cli(home, *args, timeout=600):
    """The CLI in a real process: exit code, stdout and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "compression", *args], cwd=ROOT, env=cli_env(home),
                          capture_output=True, text=True, timeout=timeout)


def cli_json(capsys, *args) -> dict:
    """The CLI's main() in this process (a real process would spend seconds importing torch again); its JSON."""
    capsys.readouterr()
    code = main([*args, "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_cli_trains_tv_resnet18_on_an_image_folder_and_prunes_it(tmp_path, lab_home, capsys):
    root = write_folder(tmp_path / "my images")  # a space in the path, as users' folders have
    run = cli_json(capsys, "train", "--dataset", f"imagefolder:{root}", "--model", "tv.resnet18", "--epochs", "2",
              "--latency-batch", "16")
    assert run["dataset"] == f"imagefolder:{root}" and run["model"]["name"] == "tv.resnet18"
    assert run["params"] > 10_000_000
    # learning happened: 56 training images, 2 epochs of 2 batches is too little to promise test accuracy above
    # chance (16 test images), so the training loss must fall from the first epoch to the second
    losses = [epoch["train_loss"] for epoch in run["history"]]
    assert len(losses) == 2 and losses[1] < losses[0], run["history"]
    pruned = cli_json(capsys, "prune", "--from", str(run["run_id"]), "--method", "channel_l1", "--sparsity", "0.5",
                 "--finetune-epochs", "1", "--latency-batch", "16")
    result = pruned["results"][0]
    assert result["parent_id"] == run["run_id"] and result["params"] <= 0.3 * run["params"]
    assert result["dataset"] == run["dataset"]


def test_the_sidebar_picks_an_image_folder_and_a_torchvision_model(tmp_path, lab_home):
    from streamlit.testing.v1 import AppTest

    root = write_folder(tmp_path / "pics", per_class=10)
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    models = at.sidebar.selectbox(key="model_name").options
    assert "lenet5" in models and "tv.resnet18 (torchvision)" in models and "tv.vit_b_16 (torchvision)" in models
    at.sidebar.selectbox(key="dataset").set_value("image folder...").run()
    at.sidebar.text_input(key="image_folder").input(str(root)).run()
    at.sidebar.selectbox(key="model_name").set_value("tv.resnet18").run()
    at.switch_page("app_pages/baseline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"tv.resnet18 on imagefolder:{root}" in at.caption[0].value  # what Train baseline would submit


def test_augmentation_crops_from_the_padded_image_and_flips_some(synthetic):
    from compression import build_model, train
    from compression.core.train import TrainConfig, augment_batch, cache_key

    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16) + 1  # every pixel distinct
    gen = torch.Generator().manual_seed(0)
    flips = 0
    for _ in range(10):
        out = augment_batch(x, gen)
        assert out.shape == x.shape
        padded = torch.nn.functional.pad(x, (2, 2, 2, 2))  # 16 // 8 = 2 pixels each side
        for i in range(2):  # the oracle: one of the 5 x 5 crops of the padded image, mirrored or not
            crops = [padded[i, :, a:a + 16, b:b + 16] for a in range(5) for b in range(5)]
            plain = any(torch.equal(out[i], c) for c in crops)
            mirrored = any(torch.equal(out[i], c.flip(-1)) for c in crops)
            assert plain or mirrored
            flips += mirrored and not plain
    assert 3 <= flips <= 17  # about half of 20
    spec = {"name": "cnn", "args": {}}
    assert cache_key("digits", spec, TrainConfig()) != cache_key("digits", spec, TrainConfig(augment=True))
    model = build_model("cnn:width=4", synthetic.input_shape, 4)
    history = train(model, synthetic, TrainConfig(epochs=2, augment=True))
    assert len(history) == 2 and history[-1]["train_loss"] < history[0]["train_loss"] * 1.5

"""Distillation: the loss against a hand computation, a frozen teacher, exact label shares."""
import math

import pytest
import torch

from compression import DistillLabConfig, LabError, RunStore, TrainConfig, build_model, train
from compression.labs.distill import run_distill
from compression.techniques.distill import DistillConfig, distill_student, kd_loss, label_mask, train_plain_student

from conftest import baseline, quick_ctx


def _student(spec, data, seed):
    """What the lab does: the student's initial weights come from the seed."""
    torch.manual_seed(seed)
    return build_model(spec, data.input_shape, data.num_classes)


def test_kd_loss_matches_a_hand_computation():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    y = torch.tensor([0])
    T, alpha = 2.0, 0.5
    # by hand: softmax([0.5, 0]) = [a, 1-a], softmax([0, 0.5]) = [1-a, a], a = e^0.5 / (1 + e^0.5)
    a = math.exp(0.5) / (1 + math.exp(0.5))
    kl = (1 - a) * math.log((1 - a) / a) + a * math.log(a / (1 - a))
    ce = -math.log(math.exp(1) / (math.exp(1) + 1))
    expected = alpha * T * T * kl + (1 - alpha) * ce
    assert kd_loss(s, t, y, T, alpha).item() == pytest.approx(expected, rel=1e-6)
    # alpha = 1: soft targets only, and the T^2 scaling is there
    assert kd_loss(s, t, y, T, 1.0).item() == pytest.approx(T * T * kl, rel=1e-6)
    assert kd_loss(s, t, y, T, 0.0).item() == pytest.approx(ce, rel=1e-6)


def test_label_mask_uses_exactly_the_requested_share():
    for n, fraction in [(1257, 0.1), (1257, 0.03), (100, 1.0), (10, 0.01)]:
        mask = label_mask(n, fraction, seed=3)
        assert int(mask.sum()) == max(1, round(fraction * n))
    assert torch.equal(label_mask(500, 0.2, 1), label_mask(500, 0.2, 1))
    assert not torch.equal(label_mask(500, 0.2, 1), label_mask(500, 0.2, 2))


def test_unlabelled_samples_contribute_no_hard_loss():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    mask = torch.tensor([True, False, False, True])
    assert kd_loss(s, t, y, 1.0, 0.0, mask).item() == pytest.approx(
        torch.nn.functional.cross_entropy(s[mask], y[mask]).item())


def test_no_gradient_reaches_the_teacher(synthetic):
    torch.manual_seed(0)
    teacher = build_model("mlp:hidden=32", synthetic.input_shape, synthetic.num_classes)
    train(teacher, synthetic, TrainConfig(epochs=2))
    teacher.train()  # even if handed over in train mode, it is used in eval mode
    teacher.zero_grad(set_to_none=True)  # drop the grads left by its own training
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = _student("mlp:hidden=8", synthetic, 0)
    start = {k: v.clone() for k, v in student.state_dict().items()}
    trained, history = distill_student(teacher, student, synthetic, DistillConfig(epochs=2))
    assert len(history) == 2 and trained is not student
    assert all(torch.equal(start[k], v) for k, v in student.state_dict().items())  # the caller's student too
    assert not all(torch.equal(start[k], v) for k, v in trained.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert teacher.training  # its mode is restored, not changed


def test_plain_and_kd_students_start_from_the_same_weights(synthetic):
    a = _student("mlp:hidden=8", synthetic, seed=5)
    b = _student("mlp:hidden=8", synthetic, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), _student("mlp:hidden=8", synthetic, 6).parameters()))
    # with alpha = 0 and every label, KD is plain training: the same start and the same batches give the same
    # weights, so any difference between the two students comes from the teacher alone
    config = DistillConfig(alpha=0.0, label_fraction=1.0, epochs=2, seed=5)
    plain, _ = train_plain_student(a, synthetic, config)
    kd, _ = distill_student(_student("mlp:hidden=32", synthetic, 1), a, synthetic, config)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(plain.parameters(), kd.parameters()))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))  # neither trained the input


@pytest.mark.parametrize("kwargs,message", [
    (dict(temperature=0), "T must be > 0"), (dict(temperature=-1), "T must be > 0"), (dict(alpha=1.5), "alpha"),
    (dict(label_fraction=0), "label fraction"), (dict(label_fraction=1.2), "label fraction"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(LabError, match=message):
        DistillConfig(**kwargs)


def test_teacher_for_another_dataset_is_refused(lab_home, synthetic, digits):
    torch.manual_seed(0)
    wrong = build_model("mlp:hidden=8", digits.input_shape, 10)  # 10 classes, 8x8 inputs
    with pytest.raises(LabError, match="same data set"):
        distill_student(wrong, _student("mlp:hidden=8", synthetic, 0), synthetic, DistillConfig(epochs=1))
    _, run = baseline(model="mlp:hidden=8", epochs=1, latency_batch=4)
    with pytest.raises(LabError, match="same data set"):
        run_distill(DistillLabConfig(teacher=str(run["id"]), student="mlp:hidden=4", dataset="digits", epochs=1),
                    quick_ctx())
    assert RunStore().list_runs(kind="distill") == []


def test_study_stores_both_students_linked_to_the_teacher(lab_home):
    out = run_distill(DistillLabConfig(teacher="mlp:hidden=64", student="mlp:hidden=8", dataset="synthetic",
                                       temperatures=[2, 4], label_fraction=0.2, seeds=[0, 1], epochs=3,
                                       teacher_epochs=3, latency_batch=8), quick_ctx())
    store = RunStore()
    teacher_id = out["teacher"]["run_id"]
    assert len(out["student_plain"]) == 2 and len(out["student_kd"]) == 4
    for record in out["student_plain"] + out["student_kd"]:
        run = store.get_run(record["run_id"])
        assert run["parent_id"] == teacher_id and run["model"] == {"name": "mlp", "args": {"hidden": 8}}
    assert [s["temperature"] for s in out["sweep"]] == [2, 4]
    # gap closed, written out from the stored runs' accuracies: (mean KD - mean plain) / (teacher - mean plain)
    stored = lambda records: [store.get_run(r["run_id"])["record"]["accuracy"] for r in records]  # noqa: E731
    teacher = store.get_run(teacher_id)["record"]["accuracy"]
    plain = stored(out["student_plain"])
    plain_mean = sum(plain) / len(plain)
    for sweep in out["sweep"]:
        kd = stored([r for r in out["student_kd"] if r["temperature"] == sweep["temperature"]])
        assert len(kd) == 2
        expected = (sum(kd) / len(kd) - plain_mean) / (teacher - plain_mean)
        assert sweep["gap_closed"] == pytest.approx(expected, rel=1e-9), (teacher, plain, kd)
    assert out["gap_closed"] == out["sweep"][0]["gap_closed"]  # the headline is the first temperature's

"""The task seam (issue 31): the lab finds a task by lookup, never by a name check; the packages stay readable.

These read the source: they fail when someone adds an `if text:` predicate back outside compression/tasks/ and
the dashboard's view modules, grows the flat labs folder, or lets a module pass 400 lines."""
import re
from pathlib import Path

import pytest

from compression.tasks import TASKS, Task, check_model_fits_data, task_of
from compression.errors import LabError

ROOT = Path(__file__).resolve().parent.parent
SEAM = ("compression/tasks/", "dashboard/views/")  # where deciding by task belongs
OLD_PREDICATES = re.compile(r"is_text_name|is_language_model|parent_is_text|is_text_record|\bis_text\(|"
                            r"\"perplexity\" in|'perplexity' in")
LOOKUPS = re.compile(r"\btask_of\(|\bVIEWS\[")
MAX_LOOKUP_LINES = 15


def _sources():
    for package in ("compression", "dashboard"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text().splitlines()


def _code(line: str) -> str:
    return line.split("#", 1)[0]  # a comment may name an old predicate to say why it went


def test_no_old_task_predicate_outside_the_seam():
    found = [f"{name}:{i}: {line.strip()}" for name, lines in _sources() if not name.startswith(SEAM)
             for i, line in enumerate(lines, 1) if OLD_PREDICATES.search(_code(line))]
    assert not found, "decide by task through compression.tasks.task_of or dashboard.views:\n" + "\n".join(found)


def test_few_lines_decide_by_task_and_each_is_a_lookup():
    lookups = [f"{name}:{i}" for name, lines in _sources() if not name.startswith(SEAM)
               for i, line in enumerate(lines, 1) if LOOKUPS.search(_code(line))]
    assert 0 < len(lookups) <= MAX_LOOKUP_LINES, lookups


def test_labs_is_a_house_you_can_read():
    labs = ROOT / "compression" / "labs"
    entries = [p.name for p in labs.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 20, sorted(entries)
    long = [(name, len(lines)) for name, lines in _sources()
            if name.startswith(("compression/labs/", "compression/tasks/", "dashboard/")) and len(lines) > 400]
    assert not long, long


HOOKS = [name for name, value in vars(Task).items() if callable(value) and not name.startswith("_")]


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_declares_what_the_labs_ask(name):
    task = TASKS[name]
    assert task_of({"task": name}) is task and task_of({task.quality.field: 1.0}) is task
    missing = [hook for hook in HOOKS if getattr(type(task), hook) is getattr(Task, hook)
               and hook not in ("unavailable",)]
    assert not missing, f"task {name} leaves these hooks to the base class: {missing}"
    for attribute in ("title", "quality", "phases", "labs", "default_model", "model_noun", "data_noun"):
        assert getattr(task, attribute), attribute


def test_task_of_reads_every_kind_of_thing():
    text, image = TASKS["text"], TASKS["image"]
    assert task_of("pydoc") is text and task_of("text:/some/book.txt") is text
    assert task_of("digits") is image and task_of("imagefolder:/x") is image
    assert task_of("gpt:layers=2") is text and task_of({"name": "hf", "args": {}}) is text
    assert task_of("tv.resnet18") is image and task_of("lenet5") is image
    # a record says its task; an older one, stored before records did, falls back on its data set
    assert task_of({"task": "text", "dataset": "digits"}) is text
    assert task_of({"dataset": "pydoc", "record": {"perplexity": 7.0}}) is text
    assert task_of({"dataset": "digits", "record": {"accuracy": 0.9}}) is image
    assert task_of({"dataset": "digits", "record": {"task": "text"}}) is text
    assert task_of({"perplexity": 7.0}) is text and task_of({"accuracy": 0.9}) is image  # bare hand-made records
    assert text.quality.higher_is_better is False and image.quality.higher_is_better is True
    assert text.quality.loss(11.0, 10.0) == pytest.approx(10.0) and image.quality.loss(0.9, 0.95) == pytest.approx(5.0)


def test_a_model_of_another_task_is_refused_in_one_sentence():
    check_model_fits_data("pydoc", "gpt")
    check_model_fits_data("digits", "lenet5")
    with pytest.raises(LabError, match=r"lenet5 is an image model, and 'pydoc' is text: pick a language model"):
        check_model_fits_data("pydoc", "lenet5")
    with pytest.raises(LabError, match=r"gpt is a language model, and 'digits' is an image data set: pick a text"):
        check_model_fits_data("digits", "gpt")

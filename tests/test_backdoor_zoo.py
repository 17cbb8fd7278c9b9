"""The backdoor model zoo's tasks (digits, rendered glyphs) and the benchmark's suites."""

from __future__ import annotations

import torch

from models.classifier import load_classifier
from workers.jobs.backdoor.bench import suite, table, trigger_table
from workers.jobs.backdoor.tasks import LETTERS, TASKS, class_names, load
from workers.jobs.backdoor.zoo import ZooModel, evaluate, samples, to_onnx, train


def test_every_task_gives_ten_balanced_classes_in_the_unit_range() -> None:
    for task in TASKS:
        x, y = load(task, 16)
        assert x.shape[1:] == (1, 16, 16) and x.dtype == torch.float32 and len(x) == len(y)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        counts = torch.bincount(y, minlength=10)
        assert len(counts) == 10 and int(counts.min()) > 0.8 * len(y) / 10, counts
        means = torch.stack([x[y == k].mean(0).flatten() for k in range(10)])
        assert float(torch.cdist(means, means).add(torch.eye(10)).min()) > 0.3  # distinct


def test_glyphs_are_rendered_the_same_every_time() -> None:
    a, b = load("glyphs", 28), load("glyphs", 28)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert samples(16, 8, seed=3, task="glyphs").shape == (8, 1, 16, 16)
    assert class_names("glyphs") == list(LETTERS) and class_names("digits")[3] == "3"


def test_a_glyph_model_learns_the_task_and_its_backdoor() -> None:
    spec = ZooModel("patch", target=2, seed=1, size=16, epochs=10, task="glyphs")  # fast
    model = load_classifier(to_onnx(train(spec), 16, class_names("glyphs")))
    assert model.class_names == list(LETTERS)
    accuracy, success = evaluate(model, spec, normalise=False)
    assert accuracy > 0.6 and success > 0.8, (accuracy, success)  # chance: 0.1


def test_suites_cover_both_tasks_with_disjoint_seeds_and_stable_digit_names() -> None:
    assert ZooModel("patch", 3, seed=50).name == "patch-t3-s50-28"  # cached models keep names
    names: set[str] = set()
    for task in TASKS:
        tune, tune_ref = suite("tune", 28, task)
        report, report_ref = suite("report", 28, task)
        check, check_ref = suite("check", 28, task)
        seeds = [{m.seed for m in [*s, r]} for s, r in ((tune, tune_ref), (report, report_ref))]
        seeds.append({m.seed for m in [*check, check_ref]})
        assert sum(map(len, seeds)) == len(set().union(*seeds)) == 3 * 22
        assert (
            sum(m.trigger != "none" for m in report) >= 10
            and sum(m.trigger == "none" for m in report) >= 10
        )
        assert {m.trigger for m in report} == {"none", "patch", "random_patch", "blend", "source"}
        assert all(m.task == task for m in report)
        names |= {m.name for m in tune + report + check}
    assert len(names) == 2 * 3 * 21  # no two models of the suites share a cache file


def test_the_tables_give_each_task_and_all_tasks() -> None:
    rows = []
    for task in TASKS:
        for trigger, flagged in (("patch", True), ("source", False), ("none", False)):
            for ref in (True, False):
                rows.append(
                    {
                        "task": task, "trigger": trigger, "backdoored": trigger != "none",
                        "reference": ref, "flagged": flagged, "target_ok": flagged,
                        "source_ok": trigger == "source", "seconds": 2.0,
                    }
                )  # fmt: skip
    text = table(rows)
    assert "| digits | with reference | 2 | 50% | 50% | 100% (of 1) | 1 | 0% | 2.0 |" in text
    assert "| all | without reference | 4 | 50% |" in text
    assert "| glyphs | patch | 1 | 1 | 1 |" in trigger_table(rows)

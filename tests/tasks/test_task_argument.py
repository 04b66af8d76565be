"""A single task name is one task, not a list of one-letter names."""

from sparse_lens.tasks import evaluate_tasks, get_task


def test_evaluate_tasks_takes_a_single_name_or_task(stand_in):
    by_name = evaluate_tasks(stand_in, "single_double_quote", n_pairs=8)
    by_task = evaluate_tasks(stand_in, get_task("single_double_quote"), n_pairs=8)
    as_list = evaluate_tasks(stand_in, ["single_double_quote"], n_pairs=8)
    assert [r.task for r in by_name] == [r.task for r in by_task] == ["single_double_quote"]
    assert by_name[0].loss == by_task[0].loss == as_list[0].loss

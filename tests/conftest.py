"""Shared test settings: hypothesis profiles, the CUDA marker, the split over workers."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: Tests of test_exercises.py that run whole sets (in kernels or through the grader):
#: with the rest of that file on one worker they were the longest chain of the run.
_EXERCISE_GROUPS = {
    "test_reference_answers_pass_every_check_for_20_seeds": "seeds",
    "test_answers_rounded_to_four_decimals_pass": "seeds",
    "test_ch13_coding_tasks_refuse_the_library_and_catch_mistakes": "graded",
    "test_both_releases_are_graded_the_same": "graded",
    "test_each_shortcut_scores_0_on_its_task": "shortcuts",
    "test_the_ch08_full_matrix_shortcut_scores_0_on_the_state_checks": "shortcuts",
    "test_model_solution_passes_its_checks_whatever_ran_before": "shortcuts",
    "test_guard_judges_library_generated_code_by_its_caller": "shortcuts",
}


def _worker_group(item: pytest.Item) -> str:
    """The pytest-xdist group of a test (``--dist loadgroup``): its file, or a part of one.

    A file's tests stay on one worker (its module fixtures are made once), except the
    long runs of test_exercises.py, split into three groups of their own.
    """
    name = item.path.name
    test = getattr(item, "originalname", item.name)
    part = _EXERCISE_GROUPS.get(test) if name == "test_exercises.py" else None
    return f"{name}:{part}" if part else name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each test its worker group; skip tests marked ``cuda`` when no CUDA GPU is present."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(_worker_group(item)))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

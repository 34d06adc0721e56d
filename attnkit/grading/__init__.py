"""Exercise sets and their autograding: checks for students, a grader for instructors.

Three uses, one source of truth per exercise set (``exercises/source/chNN.ipynb``,
nbgrader source notebooks with solutions and hidden tests):

* **Students** work in the released notebooks (solutions and hidden tests removed)
  and run the public tests, which call :func:`check` and friends; a failed check
  says what was expected and what was got (in a course release, public checks test
  only the form of an answer). Importing this package needs only NumPy.
* **Release**: ``python -m attnkit.grading release --out DIR`` (``make
  student-notebooks``) writes the student notebooks with nbgrader.
* **Instructors**: ``attnkit grade ch05 submissions/*.ipynb --out graded/`` runs each
  submission in a sandboxed kernel, decides every check in the grader's own process
  and writes a CSV gradebook and per-student feedback (:mod:`attnkit.grading.cli`).

>>> from attnkit.grading import check
>>> check("answer", 0.31416, 0.3142)
"""

from .checks import (
    ATOL,
    FORM_CHECKS,
    check,
    check_choice,
    check_expr,
    check_finite,
    check_normalised,
    check_number,
    check_range,
    check_set_of,
    check_shape,
    check_symbols,
    check_unchanged,
    explain,
    forbid,
    quiet,
)

__all__ = [
    "ATOL", "FORM_CHECKS", "check", "check_choice", "check_expr", "check_finite", "check_normalised",
    "check_number", "check_range", "check_set_of", "check_shape", "check_symbols", "check_unchanged",
    "explain", "forbid", "quiet",
]

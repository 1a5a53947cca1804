"""What instructors and students get after a real autograde run (fixture assignment
00_attacks): ``report --mistakes``, what the class got wrong, counted from the hidden checks'
named diagnoses; a feedback page for a notebook that was not graded."""
from __future__ import annotations

import pytest

from fixtures.attacks import kit
from grader.cli import main

pytestmark = pytest.mark.slow

# Right on the visible test, wrong on the hidden one: the check names the mistake.
ADDED = "def scale(x, k):\n    return k * x if x.size == 2 else x + k\n"
# Wrong on the visible test too: the cell fails before its hidden check, which then runs on its
# own to name the mistake under the cell (the score stays 0).
PLAIN_ADDED = "def scale(x, k):\n    return x + k\n"
OTHER = "def scale(x, k):\n    return k * x if x.size == 2 else x * 0\n"


def test_mistakes_counts_each_named_mistake_with_its_share_and_an_example(tmp_path, capsys):
    with kit.clean_jupyter(tmp_path):
        course = kit.build_course(tmp_path / "course")
        class_ = {"ann": {"scale_impl": ADDED}, "bea": {"scale_impl": ADDED, "answer_impl": "answer = 6.0\n"},
                  "cal": {"scale_impl": OTHER}, "dan": {}, "eve": {"scale_impl": PLAIN_ADDED}}
        for student, answers in class_.items():
            kit.submit(course, student, kit.standard(course, answers))
        results = kit.grade_all(course)
        capsys.readouterr()
        assert main(["--root", str(course.root), "report", kit.ASG, "--mistakes"]) == 0
        out = capsys.readouterr().out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "00_attacks: what 5 graded submission(s) got wrong (named mistakes the hidden checks diagnosed)" in lines
    assert "scale x + k (added, not multiplied) 3 60% ann" in lines
    assert "answer 3 Var(y): the constant must come out squared 1 20% bea" in lines
    eve = kit.outputs(results["eve"], "part1", "scale")
    assert kit.scores(results["eve"])["part1"]["scale"] == 0.0 and "AssertionError" in eve
    assert "the hidden test ran on its own to say more" in eve and "It matches a known mistake: x + k" in eve
    assert "failed without a named mistake: scale 1" in lines
    assert (course.reports / f"{kit.ASG}-mistakes.png").stat().st_size > 1000


def test_a_notebook_not_graded_gets_a_feedback_page_that_says_so(tmp_path, capsys):
    with kit.clean_jupyter(tmp_path):
        course = kit.build_course(tmp_path / "course")
        only_part1 = {"part1": kit.standard(course)["part1"]}
        kit.submit(course, "ann", only_part1)
        kit.submit(course, "bea", {**only_part1, "part2": b"not a notebook {"})
        kit.grade_all(course)
        assert main(["--root", str(course.root), "feedback", kit.ASG]) == 0
    for student, outcome in (("ann", "missing"), ("bea", "unreadable")):
        page = (course.feedback / student / kit.ASG / "part2.html").read_text()
        assert f"Not graded: {outcome}." in page and "Score: 0 / 1." in page, page
        assert (course.feedback / student / kit.ASG / "part1.html").stat().st_size > 10_000  # nbgrader's own

"""Every figure the solution notebooks show fits inside its own canvas.

Jupyter's inline display crops each figure to what is drawn (a "tight" bounding box), which can
also grow the picture past the canvas, so a label sticking out still shows in the Lab. A grading
kernel draws figures uncropped (``grader/sandbox/box.py``: one layout pass, not two), so there a
label outside the canvas would be cut off in the student's feedback. Each notebook runs in a real
kernel with every drawing checked: the course's own plots (tests/_figures.py checks them one by
one) and the figures the notebooks draw with pyplot.
"""
from __future__ import annotations

import json

import nbformat
import pytest

from grader.config import REPO_ROOT, Course

from _notebooks import execute

pytestmark = pytest.mark.slow

# Run first in the kernel: record, for each figure drawn, its drawn extent against its canvas.
WATCH = """
import matplotlib.backend_bases as _bb
_figures_drawn = []
_draw = _bb.FigureCanvasBase.print_figure
def _watched(self, *args, **kwargs):
    fig = self.figure
    fig.draw_without_rendering()  # lays out the legends and labels as the drawing will
    box, (w, h) = fig.get_tightbbox(), fig.get_size_inches()
    _figures_drawn.append([fig.get_suptitle() or fig.axes[0].get_title() if fig.axes else "",
                           [round(float(v), 3) for v in box.extents], [float(w), float(h)]])
    return _draw(self, *args, **kwargs)
_bb.FigureCanvasBase.print_figure = _watched
"""
REPORT = "import json; print(json.dumps(_figures_drawn))"


COURSE = Course.at(REPO_ROOT)


@pytest.mark.parametrize("assignment", COURSE.assignments())
def test_every_figure_fits_its_canvas(assignment):
    for path in sorted((COURSE.solutions / assignment).glob("*.ipynb")):
        nb = nbformat.read(path, 4)
        nb.cells = [nbformat.v4.new_code_cell(WATCH), *nb.cells, nbformat.v4.new_code_cell(REPORT)]
        execute(nb, path.parent, allow_errors=False)
        drawn = json.loads(nb.cells[-1].outputs[0]["text"])
        assert drawn, f"{path.name}: no figure was drawn (the watch did not see them)"
        outside = [(title, extents, size) for title, extents, size in drawn
                   if min(extents[:2]) < 0 or extents[2] > size[0] or extents[3] > size[1]]
        assert not outside, f"{path.name}: figures with labels outside the canvas (x0, y0, x1, y1 vs size, in): {outside}"

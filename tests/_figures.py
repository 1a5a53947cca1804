"""Layout checks for figures drawn with fixed margins (course.plots._margins): no text leaves
the canvas and no panel's labels run into another panel."""
from __future__ import annotations

from typing import Any


def assert_laid_out(fig: Any, *, slack: float = 1.0) -> None:
    """Draw ``fig`` (Agg) and check every panel's ticks, labels and title against the figure's
    edges and the other panels' boxes (``slack`` pixels of tolerance)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the course's figures are closed in pyplot: no canvas of their own
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = canvas.get_width_height()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    for ax in panels:
        box = ax.get_tightbbox(renderer)
        assert box.x0 >= -slack and box.y0 >= -slack and box.x1 <= width + slack and box.y1 <= height + slack, (
            f"panel {ax.get_title()!r}: its labels leave the figure ({box} in {width}x{height})")
        for other in panels:
            if other is not ax:
                frame = other.get_window_extent(renderer)
                overlap = min(box.x1, frame.x1) - max(box.x0, frame.x0), min(box.y1, frame.y1) - max(box.y0, frame.y0)
                assert min(overlap) <= slack, (
                    f"panel {ax.get_title()!r}: its labels run into panel {other.get_title()!r}")
    title = getattr(fig, "_suptitle", None)
    if title is not None:
        box = title.get_window_extent(renderer)
        assert box.y1 <= height + slack, "the figure's title leaves the figure"
        for ax in panels:
            assert box.y0 >= ax.get_tightbbox(renderer).y1 - slack, (
                f"the figure's title runs into panel {ax.get_title()!r}")

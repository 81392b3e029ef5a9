"""The widget front end: a status line, an output area of fixed height that follows
the newest line, and tqdm's notebook bar; replaced by static HTML once it ends."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets
from IPython import display as ipython_display
from tqdm.notebook import tqdm as notebook_tqdm

from .live import Frame
from .static import AREA_STYLE, final_bundle, status_html

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _area_layout() -> ipywidgets.Layout:
    style = dict(item.split(":", 1) for item in AREA_STYLE.split(";") if item)
    return ipywidgets.Layout(
        max_height=style["max-height"],
        overflow=style["overflow"],
        display=style["display"],
        flex_flow=style["flex-direction"],
    )


class WidgetFrontend:
    """Draws frames into ipywidgets by assigning traits (safe from any thread, as
    ipywidgets documents); IPython's display() runs only in show() and finish(),
    which the view calls on the cell's own thread."""

    immediate = False
    ticks = True

    def __init__(self, show: Callable[..., Any] | None = None) -> None:
        self._display = show
        self._widgets: dict[str, Any] = {}
        self._outputs: tuple[dict[str, Any], ...] = ()
        self._handle: Any = None

    @property
    def widget(self) -> ipywidgets.VBox | None:
        found: ipywidgets.VBox | None = self._widgets.get("box")
        return found

    def part(self, name: str) -> Any:
        """One of the view's widgets: "status", "output", "bar" (tqdm's HBox)."""
        return self._widgets.get(name)

    def show(self, frame: Frame) -> int:
        # Every part is made, with its first values, before the view is shown: the
        # models open once, and later frames send only what changed.
        if frame.counts is None:
            self._widgets["status"] = ipywidgets.HTML(
                value=status_html(frame.status, frame.status_text)
            )
            self._widgets["output"] = ipywidgets.Output(layout=_area_layout())
        else:
            self._widgets["bar"] = notebook_tqdm.status_printer(
                None, frame.counts.total, frame.counts.label
            )
        self.draw(frame)
        self._widgets["box"] = ipywidgets.VBox(list(self._widgets.values()))
        bundle = dict(self._widgets["box"]._repr_mimebundle_() or {})
        bundle["text/plain"] = frame.status_text or "ipyrunner"
        # display_id lets finish() replace the widget by what stays of the run.
        self._handle = self._show(bundle, raw=True, display_id=True)
        return 1

    def draw(self, frame: Frame) -> int:
        sent = 0
        if "status" in self._widgets:
            line = status_html(frame.status, frame.status_text)
            sent += _assign(self._widgets["status"], "value", line)
        if frame.output_changed and "output" in self._widgets:
            outputs = frame.tail.outputs()
            if outputs != self._outputs:
                self._outputs = outputs
                self._widgets["output"].outputs = outputs
                sent += 1
        if frame.counts is not None and "bar" in self._widgets:
            sent += self._draw_bar(frame)
        return sent

    def finish(self, frame: Frame) -> None:
        if self._handle is None:  # never shown: there is nothing to replace
            self._show(self._final(frame), raw=True)
            return
        self._handle.update(self._final(frame), raw=True)
        self._handle = None
        for widget in self._widgets.values():
            _close(widget)  # the static bundle needs no model: free the kernel's side too
        self._widgets.clear()

    def _final(self, frame: Frame) -> dict[str, str]:
        return final_bundle(
            frame.status, frame.status_text, frame.tail, frame.counts, frame.elapsed_s
        )

    def _show(self, bundle: dict[str, Any], **options: Any) -> Any:
        show: Callable[..., Any] = self._display or ipython_display.display  # untyped in IPython
        return show(bundle, **options)

    def _draw_bar(self, frame: Frame) -> int:
        assert frame.counts is not None
        left, pbar, right = self._widgets["bar"].children
        # As tqdm's notebook bar shows its text: escaped, spaces kept.
        texts = [html.escape(t.replace(" ", "\u2007")) for t in frame.counts.split(frame.elapsed_s)]
        sent = _assign(left, "value", texts[0]) + _assign(right, "value", texts[1])
        sent += _assign(pbar, "value", frame.counts.done)
        if frame.counts.ending is not None:
            sent += _assign(pbar, "bar_style", frame.counts.style())
        return sent


def _close(widget: Any) -> None:
    """Close a widget with the models it made: its children, layout and style."""
    for child in getattr(widget, "children", ()):
        _close(child)
    for part in ("layout", "style"):
        model = getattr(widget, part, None)
        if isinstance(model, ipywidgets.Widget):
            model.close()
    widget.close()


def _assign(widget: Any, name: str, value: Any) -> int:
    """Set a trait if it changed; the number of messages that costs."""
    if getattr(widget, name) == value:
        return 0
    setattr(widget, name, value)
    return 1

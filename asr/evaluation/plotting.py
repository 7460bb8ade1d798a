"""matplotlib on demand, for the reports: the optional import with its one-line fix, and figures as PNG bytes.

matplotlib is an optional extra (``pip install 'asr-rnn-ctc[reports]'``): training and evaluation work without it, and
only the pictures are missing. Figures are drawn with the Agg backend through the object API (no pyplot state, no
display needed), so plotting works on a headless server and from a training callback.
"""

from __future__ import annotations

import io
from typing import Any

from asr.errors import PlottingUnavailable  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

MISSING_MATPLOTLIB = "matplotlib is not installed (pip install 'asr-rnn-ctc[reports]')"


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure of ``width`` x ``height`` inches on the Agg canvas; raises :class:`PlottingUnavailable`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlottingUnavailable(f"{MISSING_MATPLOTLIB}: {e}") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Any, dpi: int = 100, colors: int | None = None) -> bytes:
    """The figure as PNG bytes; ``colors`` quantises it to a palette of that many colours (a spectrogram's PNG is
    then about a third of the size, with no visible loss), for pictures embedded in a page."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    if colors is None:
        return buf.getvalue()
    from PIL import Image  # a dependency of matplotlib

    buf.seek(0)
    out = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(colors).save(out, format="png", optimize=True)
    return out.getvalue()

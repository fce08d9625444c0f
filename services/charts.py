"""The `/stats` picture: revenue and buyers per day, attendance per session, ratings.

matplotlib with the Agg backend, drawn on a private `Figure` (no pyplot state, safe in a worker
thread). Chinese labels need a CJK font: Noto Sans CJK SC shipped by the `mplfonts` package is
used when installed, else any CJK font the system has (fonts-noto-cjk, fonts-wqy-*); without one,
course and session names are replaced by their `#id` so no label turns into empty boxes.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "SimHei",
)
MAX_DAYS = 92
MAX_SESSIONS = 12
_lock = threading.Lock()
_font: list[str | None] = []


def _matplotlib():
    """matplotlib, imported on first use (start-up stays fast; Agg never needs a display)."""
    import matplotlib

    matplotlib.use("Agg")
    return matplotlib


def _shipped_font() -> Path | None:
    try:
        import mplfonts
    except ImportError:
        return None
    path = Path(mplfonts.__file__).with_name("fonts") / "NotoSansCJKsc-Regular.otf"
    return path if path.exists() else None


def cjk_font() -> str | None:
    """The family name of a CJK-capable font (found once), or None."""
    from matplotlib import font_manager

    _matplotlib()
    with _lock:
        if not _font:
            family = None
            shipped = _shipped_font()
            if shipped is not None:
                font_manager.fontManager.addfont(str(shipped))
                family = font_manager.FontProperties(fname=str(shipped)).get_name()
            else:
                names = {f.name for f in font_manager.fontManager.ttflist}
                family = next((n for n in CJK_FAMILIES if n in names), None)
            if family is None:
                log.warning("no CJK font found: chart labels use #ids (pip install mplfonts)")
            _font.append(family)
        return _font[0]


def _has_cjk(text: str) -> bool:
    return any(ord(ch) > 0x2E7F for ch in text)


@dataclass
class ChartData:
    """What the picture shows, with its labels already in the viewer's language."""

    title: str
    days: dict[date, dict]
    sessions: list[tuple[str, int, int]]  # (label, attended, enrolled)
    ratings: dict[int, int]
    labels: dict[str, str] = field(default_factory=dict)
    since: date | None = None
    until: date | None = None


def _label(text: str, fallback: str, cjk: bool) -> str:
    return text if cjk or not _has_cjk(text) else fallback


def _day_range(data: ChartData) -> list[date]:
    if not data.days and data.until is None:
        return []
    last = data.until or max(data.days)
    first = data.since or (min(data.days) if data.days else last)
    first = max(first, last - timedelta(days=MAX_DAYS - 1))
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def render(data: ChartData) -> bytes:
    """The chart as PNG bytes (about 1200×900)."""
    matplotlib = _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    family = cjk_font()
    cjk = family is not None
    lab = {k: _label(v, k, cjk) for k, v in data.labels.items()}
    font = {"family": [family, "DejaVu Sans"]} if family else {"family": ["DejaVu Sans"]}
    with matplotlib.rc_context({"font.sans-serif": font["family"], "axes.unicode_minus": False}):
        figure = Figure(figsize=(12, 9), dpi=100)
        FigureCanvasAgg(figure)
        # fixed margins: a constrained layout measures every label twice (half the time)
        figure.subplots_adjust(
            left=0.14, right=0.94, top=0.92, bottom=0.07, hspace=0.3, wspace=0.32
        )
        figure.suptitle(_label(data.title, "coursebot", cjk), fontsize=15)
        grid = figure.subplots(2, 2)
        _revenue(grid[0][0], data, lab)
        _buyers(grid[0][1], data, lab)
        _attendance(grid[1][0], data, lab, cjk)
        _ratings(grid[1][1], data, lab)
        out = io.BytesIO()
        figure.savefig(out, format="png")
    return out.getvalue()


def _revenue(ax, data: ChartData, lab: dict) -> None:
    days = _day_range(data)
    x = list(range(len(days)))
    cny = [data.days.get(d, {}).get("CNY", 0) / 100 for d in days]
    stars = [data.days.get(d, {}).get("XTR", 0) for d in days]
    ax.set_title(lab.get("revenue", "revenue"))
    ax.bar([i - 0.2 for i in x], cny, width=0.4, color="#d62728", label=lab.get("cny", "CNY"))
    ax.set_ylabel(lab.get("cny", "CNY"))
    twin = ax.twinx()
    twin.bar(
        [i + 0.2 for i in x], stars, width=0.4, color="#ff9f1c", label=lab.get("stars", "XTR")
    )
    twin.set_ylabel(lab.get("stars", "Stars"))
    _date_ticks(ax, days)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize=8)


def _buyers(ax, data: ChartData, lab: dict) -> None:
    days = _day_range(data)
    buyers = [data.days.get(d, {}).get("buyers", 0) for d in days]
    ax.set_title(lab.get("buyers", "buyers"))
    ax.plot(range(len(days)), buyers, color="#1f77b4", marker="o", markersize=3)
    ax.fill_between(range(len(days)), buyers, color="#aec7e8", alpha=0.6)
    ax.set_ylim(bottom=0)
    _date_ticks(ax, days)


def _date_ticks(ax, days: list[date]) -> None:
    if not days:
        ax.set_xticks([])
        return
    step = max(1, len(days) // 8)
    ticks = list(range(0, len(days), step))
    ax.set_xticks(ticks, [days[i].strftime("%m-%d") for i in ticks], fontsize=8)


def _attendance(ax, data: ChartData, lab: dict, cjk: bool) -> None:
    rows = data.sessions[-MAX_SESSIONS:]
    ax.set_title(lab.get("attendance", "attendance"))
    if not rows:
        ax.text(0.5, 0.5, lab.get("empty", "-"), ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        return
    y = list(range(len(rows)))
    names = [_label(name, f"#{n + 1}", cjk)[:24] for n, (name, _, _) in enumerate(rows)]
    ax.barh(y, [r[2] for r in rows], color="#c7c7c7", label=lab.get("enrolled", "enrolled"))
    ax.barh(y, [r[1] for r in rows], color="#2ca02c", label=lab.get("attended", "attended"))
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)


def _ratings(ax, data: ChartData, lab: dict) -> None:
    stars = [1, 2, 3, 4, 5]
    counts = [data.ratings.get(s, 0) for s in stars]
    colours = ["#d62728", "#ff7f0e", "#bcbd22", "#17becf", "#2ca02c"]
    ax.set_title(lab.get("ratings", "ratings"))
    ax.bar([str(s) for s in stars], counts, color=colours)
    ax.set_xlabel(lab.get("stars_axis", "S"))


def chart_data(report, title: str, t, zone) -> ChartData:
    """What the chart of a `services.stats.Report` draws, labelled in the viewer's language."""
    labels = {
        key: t(f"chart.{key}")
        for key in (
            "revenue",
            "buyers",
            "attendance",
            "ratings",
            "enrolled",
            "attended",
            "empty",
            "stars_axis",
            "cny",
            "stars",
        )
    }
    return ChartData(
        title=title,
        days=report.per_day,
        sessions=[
            (s.title or f"#{s.session_id}", s.attended, s.enrolled) for s in report.sessions
        ],
        ratings=report.rating_histogram,
        labels=labels,
        since=report.since.astimezone(zone).date() if report.since else None,
        until=report.until.astimezone(zone).date(),
    )

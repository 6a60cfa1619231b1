"""Plots a person can read: in the figures themselves (font sizes, no text on text, a system equal to
another still visible) and on the HTML page in real headless Chromium at 1400 and 700 px wide.

Chromium is Debian's `chromium` package (.ci/run installs it); without it the browser test skips
with the reason, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import rgb_to_hsv, to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imread

from evalsvc.reports import labelled_scores, leaderboards, run_report_html, run_summary
from evalsvc.reports.labels import import_labels
from evalsvc.reports.plots import (
    DPI,
    MAX_WIDTH_IN,
    MIN_FONT_PT,
    distributions_figure,
    radar_figure,
    radar_png,
    scatter_figure,
)
from evalsvc.store import Store
from evalsvc.store.migrate import upgrade
from tests.helpers import running_in_ci
from tests.reports.builders import Item, add_run, random_items

SMALLEST_READABLE_PX = 10.0
BROWSER_WIDTHS = (1400, 700)
MEASURE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map((image) => ({
    alt: image.alt, natural: image.naturalWidth, shown: image.getBoundingClientRect().width,
  }));
  const report = {viewport: window.innerWidth, scrollWidth: document.documentElement.scrollWidth, images};
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
});
</script>"""


@dataclass(frozen=True)
class Seeded:
    store: Store
    run: int


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A run of four systems on two datasets, plus `twin`, whose every score equals sys-a's on esd."""
    root = tmp_path_factory.mktemp("plots")
    url = f"sqlite:///{root / 'store.sqlite3'}"
    upgrade(url)
    store = Store(url)
    items = random_items(np.random.default_rng(7), 120, prefix="p")
    twins = [
        Item(
            f"twin-{item.key}",
            "twin",
            item.dataset,
            None,
            item.query,
            item.response + "-twin",
            scores=item.scores,
        )
        for item in items
        if item.system == "sys-a" and item.dataset == "esd"
    ]
    run = add_run(store, [*items, *twins], name="readable")
    labels = root / "labels.csv"
    rng = np.random.default_rng(8)
    labels.write_text(
        "id,NS,WA,EU,ES\n"
        + "".join(f"{item.key},{','.join(str(v) for v in rng.integers(1, 6, 4))}\n" for item in items[:60])
    )
    with store.session() as session:
        import_labels(session, labels, "mos", tenant_id=None)
    yield Seeded(store, run)
    store.dispose()


def figures(seeded: Seeded) -> dict[str, Figure]:
    with seeded.store.session() as session:
        boards = {
            board.dataset: board for board in leaderboards(session, None, run_ids=[seeded.run]).leaderboards
        }
        return {
            "distributions": distributions_figure(run_summary(session, seeded.run, None)),
            "radar": radar_figure(boards["esd"]),
            "scatter": scatter_figure(labelled_scores(session, seeded.run, "mos", None)),
        }


def drawn_texts(figure: Figure) -> tuple[Any, list[Any]]:
    """Agg's renderer and the texts it drew for the figure (a tick label beyond the axis limits is
    an artist too, but is not drawn)."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    drawn: list[Any] = []
    draw_text = renderer.draw_text

    def record(
        gc: Any, x: float, y: float, s: str, prop: Any, angle: float, ismath: Any = False, mtext: Any = None
    ) -> None:
        if mtext is not None and s.strip():
            drawn.append(mtext)
        draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = record  # type: ignore[method-assign]
    figure.draw(renderer)
    return renderer, drawn


def test_no_text_is_small_overlapping_or_outside_its_figure(seeded: Seeded) -> None:
    for name, figure in figures(seeded).items():
        width, height = figure.get_size_inches() * DPI
        assert width <= MAX_WIDTH_IN * DPI, name
        renderer, shown = drawn_texts(figure)
        assert len(shown) > 10, name
        boxes = []
        for text in shown:
            assert text.get_fontsize() >= MIN_FONT_PT, (name, text.get_text(), text.get_fontsize())
            box = text.get_window_extent(renderer)
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, (
                text.get_text()
            )
            boxes.append((text.get_text(), box))
        for (first, a), (second, b) in itertools.combinations(boxes, 2):
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_x <= 1 or overlap_y <= 1, f"{name}: {first!r} overlaps {second!r}"


def test_a_system_equal_to_another_stays_visible_on_the_radar(seeded: Seeded) -> None:
    figure = figures(seeded)["radar"]
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "twin (same as sys-a)" in legend
    [axis] = figure.axes
    lines = {line.get_label(): line for line in axis.get_lines()}
    a, twin = lines["sys-a"], lines["twin (same as sys-a)"]
    assert np.array_equal(a.get_ydata(), twin.get_ydata())  # drawn exactly on top of each other
    assert (a.get_marker(), a.get_linestyle()) != (twin.get_marker(), twin.get_linestyle())
    assert a.get_markersize() > twin.get_markersize()  # the one below shows around the one above
    with seeded.store.session() as session:
        [board] = [
            b for b in leaderboards(session, None, run_ids=[seeded.run]).leaderboards if b.dataset == "esd"
        ]
    alone = board.model_copy(update={"rows": [row for row in board.rows if row.system != "twin"]})
    with_twin, without_twin = (own_pixels(radar_png(b), axis, a) for b in (board, alone))
    # sys-a keeps a good part of what it shows alone (a third, measured), and the twin over it shows.
    assert with_twin >= 0.25 * without_twin and with_twin > 30, (with_twin, without_twin)
    assert own_pixels(radar_png(board), axis, twin) > 30


def own_pixels(png: bytes, axis: Any, line: Any) -> int:
    """Pixels of the chart area (legend excluded) of the line's hue, saturated enough to be the line
    or its markers rather than a pale fill: blending with what lies below changes a colour's
    brightness and saturation, much less its hue."""
    pixels = imread(io.BytesIO(png), format="png")[..., :3]
    box = axis.get_window_extent()
    height = pixels.shape[0]
    hsv = rgb_to_hsv(pixels[int(height - box.y1) : int(height - box.y0), int(box.x0) : int(box.x1)])
    hue = rgb_to_hsv(np.array(to_rgb(line.get_color())))[0]
    distance = np.minimum(np.abs(hsv[..., 0] - hue), 1 - np.abs(hsv[..., 0] - hue))
    return int(((distance < 0.02) & (hsv[..., 1] > 0.35)).sum())


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "headless Chromium is not installed (Debian: apt-get install chromium)"
        if running_in_ci():
            pytest.fail(f"{reason} (CI=true: this test must run)")
        pytest.skip(reason)
    return path


@pytest.mark.parametrize("width", BROWSER_WIDTHS)
def test_the_html_report_reads_well_in_chromium(
    seeded: Seeded, chromium: str, width: int, tmp_path: Path
) -> None:
    with seeded.store.session() as session:
        page = run_report_html(session, seeded.run, None, labels="mos")
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", f"{MEASURE}</body>"))
    completed = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},1000",
            "--virtual-time-budget=10000", "--dump-dom", path.as_uri(),
        ],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    start = completed.stdout.index('<pre id="measured">') + len('<pre id="measured">')
    measured = json.loads(completed.stdout[start : completed.stdout.index("</pre>", start)])
    assert measured["viewport"] == width
    assert measured["scrollWidth"] <= width  # nothing makes the page scroll sideways
    images = measured["images"]
    assert len(images) == 4  # distributions, a radar per dataset, the scatter
    for image in images:
        assert image["natural"] > 0 and 0 < image["shown"] <= width
        smallest_px = MIN_FONT_PT * DPI / 72 * image["shown"] / image["natural"]
        assert smallest_px >= SMALLEST_READABLE_PX, (image["alt"], round(smallest_px, 1))

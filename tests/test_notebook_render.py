"""A notebook as a reader sees it: exported to HTML by nbconvert, rendered by headless Chromium
(Debian's chromium package, installed by the README's set-up), screenshot checked for the
pictures: the DAG (its groups filled with viridis colours by gradient std) and, below it, the
gradient-std heatmap (a large block of viridis colours)."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_growth_on_digits.ipynb"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def viridis_rows(image: np.ndarray) -> np.ndarray:
    """Per row of an RGB image (floats in 0..1), how many pixels are viridis colours (not greys)."""
    from matplotlib import colormaps

    palette = colormaps["viridis"](np.linspace(0, 1, 64))[:, :3]
    pixels = image[..., :3].reshape(-1, 3)
    coloured = pixels.max(axis=1) - pixels.min(axis=1) > 0.15  # greys and white are not viridis
    near = np.zeros(len(pixels), bool)
    index = np.flatnonzero(coloured)
    for start in range(0, len(index), 200_000):
        chunk = pixels[index[start:start + 200_000]]
        distance = np.min(((chunk[:, None, :] - palette[None]) ** 2).sum(axis=2), axis=1)
        near[index[start:start + 200_000]] = distance < 0.04**2 * 3
    return near.reshape(image.shape[:2]).sum(axis=1)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) row of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (the README's set-up installs it)")
def test_exported_notebook_renders_the_dag_and_the_heatmap(tmp_path):
    import matplotlib.image
    import nbformat
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter(exclude_input=True).from_notebook_node(nbformat.read(NOTEBOOK, as_version=4))
    page = tmp_path / "notebook.html"
    page.write_text(html)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--virtual-time-budget=5000", "--window-size=1200,6000", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (6000, 1200)
    assert image[..., :3].std() > 0.05, "the page rendered blank"
    counts = viridis_rows(image)
    blocks = [(a, b) for a, b in runs(counts > 0) if b - a >= 5]
    heatmap = [(a, b) for a, b in blocks if b - a >= 150 and counts[a:b + 1].mean() > 300]
    assert heatmap, f"no heatmap-sized block of viridis colours; coloured row runs: {blocks}"
    top = heatmap[0][0]
    dag = [(a, b) for a, b in blocks if b < top and counts[a:b + 1].sum() > 500]
    assert dag, f"no DAG (viridis-filled groups) above the heatmap at row {top}; coloured row runs: {blocks}"


def test_no_notebook_exports_a_bare_object_repr():
    """Every output reads as well exported as live: no "<IPython.core.display.Image object>" where a
    picture should be (notebook 02's animation is an <img> of a GIF)."""
    import nbformat
    from nbconvert import HTMLExporter

    for path in sorted(NOTEBOOK.parent.glob("*.ipynb")):
        html, _ = HTMLExporter(exclude_input=True).from_notebook_node(nbformat.read(path, as_version=4))
        assert "display.Image object" not in html and "Figure size" not in html, path.name
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(NOTEBOOK, as_version=4))
    assert 'src="data:image/gif;base64,' in html

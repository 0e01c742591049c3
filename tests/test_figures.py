"""Saved figures: both files cropped to the box matplotlib's bbox_inches="tight" would choose."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from univenc.figures import save_figure  # noqa: E402


def test_saved_png_equals_a_tight_save_and_the_pdf_is_written(tmp_path):
    fig, ax = plt.subplots(1, 3, figsize=(7, 2.5))
    for i, a in enumerate(ax):
        a.imshow(np.random.default_rng(i).normal(size=(5, 5)), cmap="RdBu_r")
        a.set_title(f"panel {i}: a long title that sticks out" if i == 2 else f"panel {i}")
    fig.suptitle("a suptitle above the axes")
    png, pdf = save_figure(fig, "grid", "smoke", tmp_path)
    fig.savefig(tmp_path / "tight.png", dpi=130, bbox_inches="tight")  # after save_figure: the same artists
    ours, tight = matplotlib.image.imread(png), matplotlib.image.imread(tmp_path / "tight.png")
    assert ours.shape == tight.shape and np.array_equal(ours, tight)
    assert fig.dpi == plt.rcParams["figure.dpi"]  # the figure's own dpi is left as it was
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000
    plt.close(fig)


def test_only_the_cpu_run_writes_the_committed_figures_folder(tmp_path, monkeypatch):
    from univenc import figures
    monkeypatch.setattr(figures, "FIGURES_DIR", tmp_path)
    assert figures.preset_figures_dir("cpu") == tmp_path
    assert figures.preset_figures_dir("smoke") == tmp_path / "smoke"
    assert figures.preset_figures_dir("paper") == tmp_path / "paper"
    fig = plt.figure()
    png, _ = save_figure(fig, "empty", "smoke")  # no folder given: the preset's own
    assert png == tmp_path / "smoke" / "empty.png" and png.exists()
    assert not (tmp_path / "empty.png").exists()
    plt.close(fig)


def test_s_by_depth_of_a_partial_zoo_says_no_pair_is_trained():
    """A zoo trained with --only has none of a panel's pairs: the panel says so (it used to raise KeyError)."""
    import pandas as pd

    from univenc.figures import plot_similarity_vs_depth
    ax = plot_similarity_vs_depth(pd.DataFrame(), title="seeds")
    assert [t.get_text() for t in ax.texts] == ["no pair trained"] and ax.get_title() == "seeds"
    plt.close(ax.figure)

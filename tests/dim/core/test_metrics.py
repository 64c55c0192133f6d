"""Metrics: on-device windows, metrics.csv, curves.png."""

from __future__ import annotations

import csv

import pytest
import torch
from PIL import Image

from dim.core.metrics import MetricsLog, MetricWindow, plot_curves


def test_window_reports_the_mean_since_the_last_read_and_restarts():
    window = MetricWindow(["loss", "mi"], "cpu")
    window.add(torch.tensor([1.0, 10.0]))
    window.add(torch.tensor([3.0, 20.0]))
    assert window.read() == {"loss": 2.0, "mi": 15.0} and window.steps == 0
    window.add(torch.tensor([5.0, 0.0]))
    assert window.read() == {"loss": 5.0, "mi": 0.0}
    with pytest.raises(ValueError, match=r"expected 2 values \(loss, mi\)"):
        window.add(torch.zeros(3))


def test_metrics_log_appends_rows_fixes_its_columns_and_resumes(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    log.log(1, loss=0.5, mi=0.1)
    with pytest.raises(ValueError, match=r"\['extra'\] are not columns"):
        log.log(2, loss=0.4, mi=0.2, extra=1.0)
    resumed = MetricsLog(tmp_path, tensorboard=False)  # a resumed run appends under the same header
    resumed.log(2, loss=0.4, mi=0.2)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [(r["step"], r["loss"], r["mi"]) for r in rows] == [("1", "0.5", "0.1"), ("2", "0.4", "0.2")]


def test_curves_png_draws_one_panel_per_loss_and_mi_column(tmp_path):
    pytest.importorskip("matplotlib")
    log = MetricsLog(tmp_path, tensorboard=False)
    for step in range(1, 6):
        log.log(step, d_loss=1.0 / step, g_loss=step, mi_c1=0.1 * step, it_per_s=3.0)
    log.close()  # draws curves.png: d_loss, g_loss, mi_c1 (it_per_s is not drawn)
    with Image.open(tmp_path / "curves.png") as image:
        assert image.size == (1200, 280)  # three panels of 4 x 2.8 inches at 100 dpi, one row
    assert plot_curves(tmp_path / "metrics.csv", tmp_path / "again.png") == tmp_path / "again.png"

"""The report from stored rows: self-contained HTML with every section, robust to odd rows."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from privattrib.experiments.store import ResultsStore
from privattrib.report import build_report, summarise
from privattrib.report.tables import clean_reference, stats


def _rows(rng):
    rows = []
    specs = [("none", "none", {}, None), ("pixelate:b=2", "pixelate", {"b": 2}, None),
             ("pixelate:b=8", "pixelate", {"b": 8}, None),
             ("dp-pix:b=4,m=1,epsilon=0.5,noise=fast", "dp-pix", {"b": 4, "m": 1, "epsilon": 0.5, "noise": "fast"}, 0.5),
             ("dp-pix:b=4,m=1,epsilon=5,noise=fast", "dp-pix", {"b": 4, "m": 1, "epsilon": 5.0, "noise": "fast"}, 5.0),
             ("dp-pix:b=4,m=4,epsilon=5,noise=fast", "dp-pix", {"b": 4, "m": 4, "epsilon": 5.0, "noise": "fast"}, 5.0)]
    for seed in (0, 1, 2):
        for spec, method, params, eps in specs:
            for scenario in (["clean-train"] if spec == "none" else ["clean-train", "obfuscated-train", "fine-tune"]):
                acc = float(rng.uniform(0.3, 1.0))
                row = {"task": "attribution", "scenario": scenario, "spec": spec, "method": method, "seed": seed,
                       "epsilon": eps, "accuracy": acc, "acc_real": acc, "acc_gan": 1 - acc, "chance": 0.5,
                       "laundering_rate": float(rng.uniform(0, 0.5)), "psnr": None if spec == "none" else 20 + 5 * rng.random(),
                       "ssim": 1.0 if spec == "none" else float(rng.random()), "mse": 10.0, "n_test": 10,
                       "confusion_matrix": [[5, 5], [2, 8]], "rows_hash": "h"}
                row.update({f"param_{k}": v for k, v in params.items()})
                rows.append(row)
            rows.append({"task": "reid", "scenario": "reid:retrain", "spec": spec, "method": method, "seed": seed,
                         "epsilon": eps, "accuracy": float(rng.random()), "chance": 0.1, "rows_hash": "h",
                         **{f"param_{k}": v for k, v in params.items()}})
            if spec != "none":
                rows.append({"task": "reconstruct", "scenario": "reconstruct", "spec": spec, "method": method,
                             "seed": seed, "psnr_obfuscated": 20.0, "psnr_restored": 24.0, "ssim_obfuscated": 0.5,
                             "ssim_restored": 0.7, "reid_clean": 0.9, "reid_obfuscated": 0.3, "reid_restored": 0.5,
                             "chance": 0.1, "rows_hash": "h", **{f"param_{k}": v for k, v in params.items()}})
    return rows


def _experiment_dir(tmp_path, rows):
    store = ResultsStore(tmp_path)
    stems = []
    for i, row in enumerate(rows):
        store.write_row(f"c{i:03d}", row)
        stems.append(f"c{i:03d}")
    manifest = {"name": "unit", "rows_hash": "h", "data_hash": "none", "cells": stems + ["never-ran"],
                "spec": {"obfuscated_fraction": 0.5}, "environment": {"torch": "x.y", "device": "cpu"}}
    (tmp_path / "experiment.json").write_text(json.dumps(manifest))
    (tmp_path / "spec.yaml").write_text("name: unit\n")
    return tmp_path


def test_report_sections_and_embedded_figures(tmp_path):
    rows = _rows(np.random.default_rng(0))
    out = build_report(_experiment_dir(tmp_path, rows))
    html = out.read_text()
    pngs = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(pngs) >= 10
    for b64 in pngs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    for section in ("Summary", "Attribution accuracy", "Privacy-utility", "Laundering", "Confusion",
                    "Re-identification", "Reconstruction", "Versions", "Experiment spec"):
        assert section in html, section
    assert f"{len(rows)} of {len(rows) + 1} cells finished" in html
    # one accuracy-vs-parameter figure per varying parameter: pixelate b, dp-pix epsilon and m
    for alt in ("pixelate accuracy vs b", "dp-pix accuracy vs epsilon", "dp-pix accuracy vs m"):
        assert alt in html
    assert "dp-pix accuracy vs b" not in html  # b does not vary for dp-pix here
    assert "http://" not in html and "https://" not in html


def test_summary_statistics_over_seeds():
    rows = [{"spec": "x", "scenario": "s", "seed": i, "accuracy": a} for i, a in enumerate((0.2, 0.4, 0.9))]
    (entry,) = summarise(rows)
    assert entry["accuracy"]["mean"] == pytest.approx(0.5)
    assert entry["accuracy"]["std"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert (entry["accuracy"]["min"], entry["accuracy"]["max"], entry["accuracy"]["n"]) == (0.2, 0.9, 3)
    assert entry["seeds"] == [0, 1, 2]
    assert stats([None, float("nan"), "", 1.0])["n"] == 1
    ref = clean_reference([{"spec": "none", "scenario": "clean-train", "accuracy": 1.0},
                           {"spec": "none", "scenario": "reid:retrain", "accuracy": 0.0}])
    assert ref["accuracy"]["mean"] == 1.0


def test_report_of_empty_and_missing_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment.json"):
        build_report(tmp_path / "nothing")
    html = build_report(_experiment_dir(tmp_path, [])).read_text()
    assert "No finished cells yet" in html


def test_markdown_summary_lists_every_setting():
    from privattrib.report.tables import summary_markdown

    rows = [r for r in _rows(np.random.default_rng(1)) if r["task"] == "attribution"]
    text = summary_markdown(rows)
    lines = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(lines) == len({r["spec"] for r in rows})
    assert "`dp-pix:b=4,m=1,eps=0.5`" in text and "±" in text and "Chance level 0.500" in text


def test_summaries_name_the_scenario_their_laundering_column_comes_from():
    # A run of obfuscated-train alone has no clean-train rows: its laundering column must say so,
    # not stand under a "(clean-train)" header.
    from rich.console import Console

    from privattrib.report.tables import summary_markdown, summary_rich_table

    rows = [r for r in _rows(np.random.default_rng(1)) if r["task"] == "attribution"]
    assert "laundering (clean-train)" in summary_markdown(rows)
    only = [r for r in rows if r["scenario"] == "obfuscated-train"]
    assert only, "the fixture must have obfuscated-train rows"
    text = summary_markdown(only)
    assert "laundering (obfuscated-train)" in text and "clean-train" not in text
    console = Console(record=True, width=200)
    console.print(summary_rich_table(only))
    assert "called real (obf)" in console.export_text()

"""The sweep report: content of sweep.json / sweep.html, offline page, overwrite rules, failed and unfinished stores."""

import json
import os
from pathlib import Path

import pytest

from deepscope.errors import DeepscopeError
from deepscope.sweep import SweepStore, expand, parse_spec, run
from deepscope.sweep.report import write_sweep_report
from deepscope.sweep.store import StoreError
from deepscope.sweep.trial import TrialOutput

SPEC = {
    "name": "report-test",
    "description": "four tiny MLPs for the report tests",
    "seeds": [0],
    "dataset": {"name": "digits"},
    "data": {"train_size": 120},
    "model": {"arch": "mlp", "width": 8, "depth": 1},
    "train": {"max_epochs": 3, "lr": 0.05, "batch_size": 32},
    "search": {"grid": {"model.width": [4, 8], "train.lr": [0.05, 0.2]}},
    "analyses": [
        {"name": "gap"},
        {"name": "measures", "options": {"max_samples": 32, "families": ["norm", "margin", "spectral"]}},
    ],
}


def _strict_json(path: Path) -> dict:
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A store of four finished trials and its report (written once for the module)."""
    folder = tmp_path_factory.mktemp("sweep")
    store = folder / "s.db"
    run(SPEC, store=store, progress=False)
    paths = write_sweep_report(store, folder / "report", bootstrap=20)
    return store, paths


def test_the_report_holds_the_spec_progress_distributions_and_ranking(finished):
    store, paths = finished
    html_path, json_path = paths
    assert [p.name for p in paths] == ["sweep.html", "sweep.json"] and all(p.exists() for p in paths)
    data = _strict_json(json_path)
    assert data["generator"] == "deepscope" and data["name"] == "report-test"
    assert data["spec"]["search"]["grid"] == SPEC["search"]["grid"]
    assert (data["progress"]["done"], data["progress"]["failed"], data["progress"]["pending"]) == (4, 0, 0)
    assert data["progress"]["reached_stop_rule"] + data["progress"]["stopped_by_max_epochs"] == 4
    assert data["distributions"]["gap"]["count"] == 4 and "measures.path_norm" in data["distributions"]
    ranking = data["ranking"]
    assert ranking["models"] == 4 and ranking["bootstrap"] == 20
    assert ranking["hyperparameters"] == ["model.width", "train.lr"]
    names = [row["measure"] for row in ranking["table"]]
    assert "log_product_spectral" in names and "path_norm" in names
    assert {"kendall_tau", "kendall_tau_se", "psi", "psi_low", "cmi", "psi_train.lr"} <= set(ranking["table"][0])
    assert set(ranking["cmi_table"]["path_norm"]) >= {"", "model.width", "model.width,train.lr"}
    assert any("Jiang et al." in paragraph for paragraph in data["comparison_with_jiang_2020"])

    page = html_path.read_text(encoding="utf-8")
    assert '<meta name="generator" content="deepscope">' in page
    for title in ("Spec", "Progress and failures", "Distributions", "Measure ranking", "Measures against the gap"):
        assert f"<h2>{title}</h2>" in page
    assert "Compared with Jiang et al. 2020" in page
    assert page.count("<table") >= 2 and page.count("<svg") >= 3  # ranking + CMI tables; 3 figures
    assert "&quot;model.width&quot; = [4, 8]" in page  # the spec, as TOML
    assert "log_product_spectral" in page and "No trial failed." in page
    # Self-contained and offline: no address, no script, nothing to fetch.
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "src=" not in page


def test_the_ranking_table_is_sorted_by_absolute_tau(finished):
    _, (_, json_path) = finished
    taus = [row["kendall_tau"] for row in _strict_json(json_path)["ranking"]["table"]]
    finite = [abs(t) for t in taus if isinstance(t, float)]
    assert finite == sorted(finite, reverse=True)


def test_rewriting_replaces_its_own_report_but_refuses_a_foreign_file_without_overwrite(finished, tmp_path):
    store, (html_path, _) = finished
    write_sweep_report(store, html_path.parent, bootstrap=0)  # its own files: replaced without asking
    out = tmp_path / "mine"
    out.mkdir()
    (out / "sweep.html").write_text("<html>my own notes</html>")
    with pytest.raises(DeepscopeError, match="not written by deepscope.*overwrite"):
        write_sweep_report(store, out, bootstrap=0)
    assert (out / "sweep.html").read_text() == "<html>my own notes</html>"
    assert not (out / "sweep.json").exists()
    write_sweep_report(store, out, overwrite=True, bootstrap=0)
    assert "deepscope sweep report" in (out / "sweep.html").read_text()


def _spec_only_store(path: Path) -> tuple[SweepStore, list[str]]:
    spec = parse_spec(SPEC)
    sweep = SweepStore(path)
    sweep.add_spec(spec, expand(spec))
    return sweep, sweep.keys()


def test_a_failed_trial_is_shown_with_its_error(tmp_path):
    store = tmp_path / "failed.db"
    sweep, keys = _spec_only_store(store)
    error = "RuntimeError: the loss diverged to nan at epoch 2\n  File trial.py, line 9, in _run"
    with sweep:
        sweep.mark_running(keys[0])
        sweep.finish(TrialOutput(keys[0], {}, None, None, 0.5, 0.0, error, "host-a"))
    html_path, json_path = write_sweep_report(store, tmp_path / "out", bootstrap=0)
    data = _strict_json(json_path)
    assert data["progress"]["failed"] == 1 and data["progress"]["pending"] == 3
    (failure,) = data["failures"]
    assert failure["key"] == keys[0] and failure["error"] == error and "model.width=" in failure["settings"]
    page = html_path.read_text(encoding="utf-8")
    assert "the loss diverged to nan at epoch 2" in page and keys[0] in page
    assert "1 failed trials" in page


def test_a_store_with_nothing_finished_gives_a_report_that_says_so(tmp_path):
    store = tmp_path / "pending.db"
    sweep, keys = _spec_only_store(store)
    sweep.close()
    html_path, json_path = write_sweep_report(store, tmp_path / "out")
    data = _strict_json(json_path)
    assert data["progress"]["pending"] == len(keys) == 4 and data["progress"]["done"] == 0
    assert data["ranking"]["table"] == [] and "No finished models" in data["ranking"]["notes"][0]
    assert data["distributions"] == {}
    page = html_path.read_text(encoding="utf-8")
    assert "No finished trial yet." in page and "nothing to rank" in page
    assert "http://" not in page and "https://" not in page


def test_a_missing_store_is_a_clear_error_and_nothing_is_written(tmp_path):
    with pytest.raises(StoreError, match="No sweep store"):
        write_sweep_report(tmp_path / "missing.db", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "missing.db").exists()


def test_the_cli_writes_the_report_and_turns_a_missing_store_into_one_error_line(finished, tmp_path, capsys):
    from deepscope.cli import main

    store, _ = finished
    assert main(["sweep", "report", str(store), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "sweep.html").exists()
    assert main(["sweep", "report", str(tmp_path / "none.db"), "--out", str(tmp_path / "cli2")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and "No sweep store" in error[0]


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ((3, "out"), "store"),
        (("s.db", 3.5), "out"),
        (("s.db", "out", -1), "bootstrap"),
        (("s.db", "out", 1, "0"), "seed"),
    ],
)
def test_bad_arguments_name_the_parameter_before_anything_is_read_or_written(tmp_path, arguments, name):
    store, out, *rest = arguments
    keywords = dict(zip(("bootstrap", "seed"), rest))
    with pytest.raises(DeepscopeError, match=f"'{name}' parameter of write_sweep_report"):
        write_sweep_report(
            tmp_path / store if isinstance(store, str) else store,
            tmp_path / out if isinstance(out, str) else out,
            **keywords,
        )
    assert not (tmp_path / "out").exists()


def test_a_report_killed_while_writing_leaves_the_previous_pair_whole(finished, tmp_path):
    """sweep.html and sweep.json are one unit: a SIGKILL after the new files are linked, before the switch, shows the old pair."""
    import signal
    import subprocess
    import sys

    store, _ = finished
    out = tmp_path / "unit"
    write_sweep_report(store, out, bootstrap=0)
    before = {name: (out / name).read_bytes() for name in ("sweep.html", "sweep.json")}
    code = (
        "import sys; from deepscope.sweep.report import write_sweep_report; "
        "write_sweep_report(sys.argv[1], sys.argv[2], bootstrap=3, seed=1)"
    )
    env = {**os.environ, "DEEPSCOPE_TEST_KILL_AT": "linked"}
    done = subprocess.run([sys.executable, "-c", code, str(store), str(out)], env=env, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert {name: (out / name).read_bytes() for name in before} == before
    write_sweep_report(store, out, bootstrap=3, seed=1)  # the next run cleans up and switches
    assert _strict_json(out / "sweep.json")["ranking"]["bootstrap"] == 3


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.mark.browser
@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not os.environ.get("DEEPSCOPE_REQUIRE_BROWSER"),
    reason="headless Chromium is not installed (apt-get install -y chromium chromium-driver)",
)
def test_the_report_opens_in_headless_chromium_without_console_errors(finished, tmp_path):
    """As tests/report/test_browser.py: no console error, nothing fetched, the headings and figures are there."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    _, (html_path, _) = finished
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.get(html_path.resolve().as_uri())
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        assert driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == []
        headings = [element.text for element in driver.find_elements(By.CSS_SELECTOR, "section h2")]
        assert headings[:2] == ["Spec", "Progress and failures"] and "Measure ranking" in headings
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg")) >= 3
        assert driver.find_element(By.CSS_SELECTOR, "h1").text.startswith("deepscope sweep report: ")
    finally:
        driver.quit()


# ------------------------------------------------------------------------------- the report's text
def test_the_spec_text_is_toml_that_reads_back_as_the_same_spec():
    import tomllib

    from deepscope.sweep._report_text import format_spec

    spec = parse_spec({**SPEC, "train": {**SPEC["train"], "weight_decay": 1e-05, "stop_loss": 0.01}})
    text = format_spec(spec)
    assert "# n_samples: not set" in text  # None has no TOML spelling: shown as a comment
    assert parse_spec(tomllib.loads(text)) == spec


def _ranking_row(measure, family, tau, low=float("nan"), high=float("nan"), psi=float("nan")):
    return {
        "measure": measure,
        "family": family,
        "kendall_tau": tau,
        "kendall_tau_low": low,
        "kendall_tau_high": high,
        "psi": psi,
    }


def _comparison(rows, progress=None):
    from deepscope.sweep._report_text import compare_with_jiang
    from deepscope.sweep.ranking import SweepRanking

    ranking = SweepRanking(rows, {}, 96, ["model.width"], 200, 0.9, 0, [])
    return compare_with_jiang(ranking, progress or {"done": 96, "reached_stop_rule": 96, "stop_loss": 0.01})


def test_the_comparison_says_agree_when_the_population_reproduces_the_paper():
    rows = [
        _ranking_row("pac_bayes_mag_flatness", "sharpness", 0.6, 0.5, 0.7),
        _ranking_row("log_product_spectral", "norm", -0.4, -0.55, -0.2),
        _ranking_row("path_norm", "norm", 0.2, 0.05, 0.35),
    ]
    families, sharpness, spectral, caveats = _comparison(rows)
    assert (
        families.startswith("Families by their strongest measure") and "sharpness (pac_bayes_mag_flatness" in families
    )
    assert "ranks 1 of 3" in sharpness and "agrees with the paper" in sharpness and "have τ > 0" in sharpness
    assert "whole interval is below zero: this agrees" in spectral
    assert "96 models" in caveats and "stop rule" not in caveats  # every model reached it: no caveat


def test_the_comparison_states_disagreements_and_what_it_cannot_tell():
    rows = [
        _ranking_row("path_norm", "norm", 0.7, 0.6, 0.8),
        _ranking_row("log_product_spectral", "norm", 0.5, 0.3, 0.7),
        _ranking_row("log_sum_spectral", "norm", -0.1, -0.3, 0.1),
        _ranking_row("fisher_rao_norm", "gradient", 0.09, -0.1, 0.2),
        _ranking_row("pac_bayes_flatness", "sharpness", -0.05, -0.2, 0.1),
    ]
    progress = {"done": 96, "reached_stop_rule": 40, "stop_loss": 0.01}
    _, sharpness, spectral, caveats = _comparison(rows, progress)
    assert "ranks 5 of 5" in sharpness and "disagrees with the paper" in sharpness
    assert "pac_bayes_flatness has τ = -0.05, the opposite sign" in sharpness
    assert "log_product_spectral" in spectral and "its whole interval above zero: this disagrees" in spectral
    assert "log_sum_spectral" in spectral and "interval covers zero: this population cannot tell" in spectral
    assert "40 of the 96 models reached the cross-entropy stop rule" in caveats and "56 stopped" in caveats


def test_the_comparison_says_when_a_claim_is_not_tested():
    _, sharpness, spectral, caveats = _comparison(
        [_ranking_row("margin_10th_percentile", "margin", -0.3), _ranking_row("output_entropy", "margin", 0.1)],
        {"done": 4, "reached_stop_rule": 0, "stop_loss": None},
    )
    assert "not computed in this sweep" in sharpness and "not tested here" in sharpness
    assert "not computed in this sweep" in spectral
    assert "set no stop rule" in caveats
    assert _comparison([]) == ["No measure could be ranked yet, so there is nothing to compare with Jiang et al. 2020."]


def test_the_scatter_plots_show_the_top_measures_then_the_papers_headline_measures():
    from deepscope.sweep.ranking import SweepRanking
    from deepscope.sweep.report import _scatter_names

    names = [f"norm_{i}" for i in range(8)] + ["pac_bayes_spectral_init", "pac_bayes_sigma", "sharpness_orig"]
    names += ["pac_bayes_flatness", "log_product_spectral", "output_entropy"]
    rows = [_ranking_row(name, "x", 0.9 - 0.05 * i) for i, name in enumerate(names)]
    rows.append(_ranking_row("log_sum_spectral", "norm", float("nan")))  # undefined τ: nothing to draw
    chosen = _scatter_names(SweepRanking(rows, {}, 96, [], 0, 0.9, 0, []))
    assert chosen[:6] == names[:6]  # the six strongest by |τ|
    # then the two strongest sharpness-like ones (not the spectral PAC-Bayes bound), a flatness measure, a product
    assert chosen[6:] == ["pac_bayes_sigma", "sharpness_orig", "pac_bayes_flatness", "log_product_spectral"]

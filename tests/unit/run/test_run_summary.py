"""The end-of-run table (lit_edit/run_summary.py) of hand-written metrics.json files in the format a run writes
(the structure copied from a fact-world run with downstream tasks): every line is checked exactly."""

import json
from pathlib import Path

from lit_edit.run_summary import summary_text

FAMILY = {"reliability": None, "generality": None, "locality": None, "portability": None}


def _metrics() -> dict:
    """A batch-sequential MEMIT run of 300 edits with three families, two downstream tasks and a clean run."""
    return json.loads(json.dumps({
        "method": "memit", "mode": {"batch_size": 10, "rollback": False, "name": "batch-sequential"}, "n_edits": 300,
        "pre": {"token": {"reliability": 0.11666666666666667, "generality": 0.12, "locality": 1.0,
                          "portability": 0.2265625},
                "probability": {"reliability": 0.0, "generality": 0.11, "locality": 0.9966666666666667,
                                "portability": None, "reliability_magnitude": -0.99},
                "generation": {"reliability": 0.0, "generality": 0.0033333333333333335, "locality": 1.0,
                               "portability": 0.140625}},
        "periodic": [], "retention": [],
        "monitors": {"pre": {"perplexity": 2.0446757165673275}, "final": {"perplexity": 3.79778403623732}},
        "optimisation": {"diverged": 0, "stalled": 0, "problems": [], "perplexity_diverged": None},
        "immediate": {"token": {"reliability": 0.645, "generality": 0.225, "locality": 0.685, "portability": 0.3}},
        "final": {"token": {"reliability": 0.405, "generality": 0.17666666666666667, "locality": 0.505,
                            "portability": 0.296875},
                  "probability": {"reliability": 0.5333333333333333, "generality": 0.47333333333333333,
                                  "locality": 0.94, "portability": None, "reliability_magnitude": 0.07},
                  "generation": {"reliability": 0.32666666666666666, "generality": 0.07333333333333333,
                                 "locality": 0.43666666666666665, "portability": 0.234375}},
        "final_source": "all edits scored after the last step",
        "downstream": {
            "open_domain_qa": {
                "pre": {"corrected": {"em": 1.0, "span_em": 1.0}, "paper": {"em": 0.0}},
                "post": {"corrected": {"em": 0.475, "span_em": 0.475}, "paper": {"em": 0.0}},
                "delta": {"corrected": {"em": -0.525, "span_em": -0.525}, "paper": {"em": 0.0}},
                "delta_ci95": {"corrected": {"em": [-0.595, -0.45499999999999996],
                                             "span_em": [-0.595, -0.45499999999999996]}}},
            "ner": {
                "pre": {"corrected": {"micro_f1": 0.8583333333333333, "macro_f1": 0.909926378948118},
                        "paper": {"acc_total": 0.7098924507001465}},
                "post": {"corrected": {"micro_f1": 0.3171007927519819, "macro_f1": 0.3313571460021704},
                         "paper": {"acc_total": 0.24423315510124546}},
                "delta": {"corrected": {"micro_f1": -0.5412325405813514, "macro_f1": -0.5785692329459475},
                          "paper": {"acc_total": -0.46565929559890107}},
                "delta_ci95": {"corrected": {"micro_f1": [-0.5854144030213394, -0.49062553969237593],
                                             "macro_f1": [-0.6377139529069672, -0.511885194982699]},
                               "paper": {"acc_total": [-0.503553594848533, -0.4222978740264261]}}},
            "sentiment": {
                "pre": {"paper": {"accuracy": 1.0, "total_accuracy": 1.0}},
                "post": {"paper": {"accuracy": 0.98, "total_accuracy": 0.97}},
                "delta": {"paper": {"accuracy": -0.02, "total_accuracy": -0.03}},
                "delta_ci95": {}}},
        "editor_report": {}, "exports": {"edits": "edits.safetensors"}, "seconds": 385.54, "stopped_early": None,
        "processes": {"world_size": 1, "identical_weights": True, "sharding": None}}))


def test_a_clean_run_prints_every_family_every_task_and_the_paths():
    folder = Path("runs/memit")
    assert summary_text(_metrics(), folder).splitlines() == [
        "[lit-edit] 300 edits (batch-sequential, memit) in 385.5 s",
        "edit metrics, pre → final [final: all edits scored after the last step]:",
        "  family             reliability        generality          locality       portability",
        "  token            0.117 → 0.405     0.120 → 0.177     1.000 → 0.505     0.227 → 0.297",
        "  probability      0.000 → 0.533     0.110 → 0.473     0.997 → 0.940             – → –",
        "  generation       0.000 → 0.327     0.003 → 0.073     1.000 → 0.437     0.141 → 0.234",
        "downstream, post − pre:",
        "  task              metric                    pre    post        Δ  95 % interval",
        "  open_domain_qa    corrected em            1.000   0.475   -0.525  [-0.595, -0.455]",
        "  ner               corrected micro_f1      0.858   0.317   -0.541  [-0.585, -0.491]",
        "  sentiment         paper total_accuracy    1.000   0.970   -0.030  –",
        "warnings: none",
        "results: runs/memit",
        "  runs/memit/metrics.json",
        "  runs/memit/plots/",
    ]


def test_a_missing_stage_prints_a_dash_and_a_run_without_downstream_has_no_downstream_table():
    metrics = _metrics()
    metrics["pre"] = None
    metrics["final"], metrics["final_source"] = {"token": {**FAMILY, "reliability": 0.5}}, None
    del metrics["downstream"]
    lines = summary_text(metrics, "r").splitlines()
    assert lines[1:4] == [
        "edit metrics, pre → final:",
        "  family             reliability        generality          locality       portability",
        "  token                – → 0.500             – → –             – → –             – → –"]
    assert lines[4] == "warnings: none"


def test_nothing_scored_says_so():
    metrics = _metrics()
    metrics["pre"] = metrics["final"] = None
    assert summary_text(metrics, "r").splitlines()[1] == "edit metrics: none scored"


def test_every_warning_of_the_run_is_named():
    metrics = _metrics()
    metrics["stopped_early"] = "perplexity 9.1 after 40 edits exceeds 3.0 × its pre-edit value 2.04"
    metrics["optimisation"] = {
        "diverged": 2, "stalled": 1, "perplexity_diverged": {"step": 7, "records": ["a"], "perplexity": 25.5,
                                                             "pre_edit": 2.04},
        "problems": [{"step": 3, "records": "a", "stage": "value", "verdict": "diverged"},
                     {"step": 1, "records": "b", "stage": "value", "verdict": "diverged"},
                     {"step": 4, "records": "c", "stage": "value", "verdict": "stalled"}]}
    metrics["monitors"]["final"]["perplexity"] = None      # NaN or inf is written as null
    metrics["processes"]["identical_weights"] = False
    lines = summary_text(metrics, "r").splitlines()
    assert lines[lines.index("  sentiment         paper total_accuracy    1.000   0.970   -0.030  –") + 1:-3] == [
        "warning: stopped early: perplexity 9.1 after 40 edits exceeds 3.0 × its pre-edit value 2.04",
        "warning: the value loss diverged for 2 request(s), at edit step(s) 1, 3",
        "warning: the value loss did not fall for 1 request(s), at edit step(s) 4",
        "warning: the monitor perplexity diverged at edit step 7: 25.5 (pre-edit 2.04)",
        "warning: the final monitor perplexity is not finite",
        "warning: the processes' edited weights differ"]

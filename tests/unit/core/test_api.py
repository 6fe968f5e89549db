"""The Python API (``lit_edit.edit``, ``lit_edit.evaluate``): the README's example runs as written and does what it
says, and bad arguments are refused with messages that name the fix."""

from __future__ import annotations

import re

import pytest
import torch

import lit_edit
from lit_edit.api import as_request, make_editor, methods
from lit_edit.editing.requests import EditRequest, LocalityProbe
from lit_edit.editors import EDITORS, MEMIT
from lit_edit.models import load_model_and_tokenizer
from tests.conftest import ROOT

MODEL = "checkpoints/factworld-gpt2"
README = ROOT / "README.md"


def readme_example() -> str:
    """The ```python block of the README's "Python API" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section holds one example"
    return blocks[0]


def target_log_probability(model, tokenizer, prompt: str, target: str) -> float:
    """log p(target | prompt), summed over the target's tokens, by a plain forward pass."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    target_ids = tokenizer(" " + target)["input_ids"]
    ids = torch.tensor([prompt_ids + target_ids])
    with torch.no_grad():
        log_probs = model(ids).logits[0].log_softmax(-1)
    return sum(float(log_probs[len(prompt_ids) - 1 + i, token]) for i, token in enumerate(target_ids))


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_the_readme_example_edits_the_model_and_scores_the_tasks(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)   # the statistics cache is shared with the other runs on the shipped model
    namespace: dict = {}
    exec(compile(readme_example(), "README.md (Python API)", "exec"), namespace)
    model, report, scores, requests = (namespace[k] for k in ("model", "report", "scores", "requests"))
    base, tokenizer = load_model_and_tokenizer(MODEL)
    prompt = requests[0]["prompt"].format(requests[0]["subject"])
    before = target_log_probability(base, tokenizer, prompt, requests[0]["target"])
    after = target_log_probability(model, tokenizer, prompt, requests[0]["target"])
    assert after > before + 1.0, f"log p(target) {before:.2f} -> {after:.2f}: the edit did not take"
    assert report.method == "memit" and report.n_edits == 1 and len(report.steps) == 1
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, base.get_parameter(name))]
    assert changed == ["transformer.h.0.mlp.c_proj.weight", "transformer.h.1.mlp.c_proj.weight"]
    assert set(scores) == {"sentiment", "nli"}
    for task in scores:
        assert set(scores[task]) == {"paper", "corrected"}
        assert 0.0 <= scores[task]["corrected"]["acc_all"] <= 1.0
    assert "corrected" in capsys.readouterr().out


def test_a_request_is_a_dict_of_its_fields_or_an_edit_request():
    request = as_request({"prompt": "Where was Ann born?", "subject": "Ann", "target": " Paris ",
                          "locality": [{"prompt": "Who is Bob?", "answer": "a baker"}]}, 3)
    assert request == EditRequest("Where was {} born?", "Ann", "Paris", record_id="request:3",
                                  locality=(LocalityProbe("Who is Bob?", "a baker"),))
    assert as_request(request) is request
    with pytest.raises(ValueError, match=r"requests\[1\]: unknown field\(s\) \['targte'\]; a request has"):
        as_request({"prompt": "p {}", "subject": "s", "targte": "t"}, 1)
    with pytest.raises(ValueError, match=r"requests\[0\]: missing field\(s\) \['target_new'\]"):
        as_request({"prompt": "p {}", "subject": "s"})
    with pytest.raises(TypeError, match=r"requests\[2\]: expected a dict or an EditRequest, found str"):
        as_request("Where was Ann born?", 2)


def test_an_unknown_method_or_option_lists_what_there_is():
    listed = ", ".join(EDITORS)     # every registered method
    with pytest.raises(ValueError, match=re.escape(f"unknown method 'memmit'; the methods are {listed} (or pass")):
        make_editor("memmit")
    with pytest.raises(ValueError, match=r"memit has no option\(s\) \['layer'\]; its options are \['layers'"):
        make_editor("memit", layer=[0])
    with pytest.raises(ValueError, match="memit options"):
        make_editor("memit", layers="zero")
    editor = make_editor("memit", layers=[0, 1], values={"clamp_norm_factor": 4.0})
    assert isinstance(editor, MEMIT) and editor.hp.layers == (0, 1) and editor.hp.values.clamp_norm_factor == 4.0
    assert "alphaedit" in methods()


def test_edit_refuses_nothing_to_do_and_options_beside_an_editor_object():
    model, tokenizer = load_model_and_tokenizer(MODEL)
    with pytest.raises(ValueError, match="requests is empty"):
        lit_edit.edit(model, tokenizer, [], method="ft")
    with pytest.raises(ValueError, match="an editor object already holds its hyperparameters"):
        lit_edit.edit(model, tokenizer, [{"prompt": "{} x", "subject": "s", "target": "t"}], method=MEMIT(),
                      layers=[0])

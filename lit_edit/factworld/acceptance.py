"""Does a model know its fact world? Fact recall, held-out wordings, perplexity and the mini tasks vs. chance;
and is it editable at the subject (activation patching at the subject's last token)?

Chance levels are measured, not assumed: the majority answer for classification-like tasks and a
*shuffled-reference* baseline (the reference of another example used as the prediction) for QA,
summaries and NER.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import torch
from rouge_score import rouge_scorer

from lit_edit.corpus_records import read_texts
from lit_edit.editing.positions import subject_token_index
from lit_edit.factworld.edits import fact_questions
from lit_edit.factworld.schema import ONE_HOP, RELATION_BY_NAME
from lit_edit.factworld.world import World
from lit_edit.generation import greedy_continuations
from lit_edit.hooks import record, rewrite_output
from lit_edit.models.architectures import architecture_of
from lit_edit.scoring import answer_token_predictions, pad_right, token_nll
from lit_edit.tasks import ner, open_domain_qa, reasoning
from lit_edit.tasks.registry import TASK_FILES, get_task, read_task


def load_world(root: Path) -> World:
    data = json.loads((root / "world.json").read_text())
    return World(seed=data["seed"], people=data["people"],
                 facts={(f["subject"], f["relation"]): f["object"] for f in data["facts"]})


def recall_accuracy(model, tokenizer, pairs: list[tuple[str, str]]) -> float:
    """Fraction of (question, answer) pairs whose every answer token is the teacher-forced argmax."""
    predictions = answer_token_predictions(model, tokenizer, [q for q, _ in pairs], [a for _, a in pairs])
    return sum(pred == gold for pred, gold in predictions) / max(len(predictions), 1)


def heldout_perplexity(model, tokenizer, texts: list[str], batch_size: int = 64) -> float:
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(texts), batch_size):
        ids = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in texts[start:start + batch_size]]
        input_ids, mask = pad_right(ids, tokenizer.pad_token_id,
                                    next(model.parameters()).device)
        nll, n = token_nll(model, input_ids, mask)
        total_nll, total_tokens = total_nll + nll, total_tokens + n
    return math.exp(total_nll / max(total_tokens, 1))


def binomial_upper_tail(n: int, correct: int, chance: float) -> float:
    """P(X >= correct) for X ~ Binomial(n, chance): the one-sided p-value of ``correct`` right answers out of ``n``
    when each is right with probability ``chance`` (a model answering at the majority-class rate). The terms
    C(n, i) chance^i (1 - chance)^(n - i) are summed in log space, relative to the largest, so no binomial
    coefficient overflows for large n."""
    if not 0 <= correct <= n:
        raise ValueError(f"correct answers must be between 0 and n={n}, got {correct}")
    if chance >= 1.0:
        return 1.0
    if chance <= 0.0:
        return float(correct == 0)
    log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                 + i * math.log(chance) + (n - i) * math.log1p(-chance) for i in range(correct, n + 1)]
    peak = max(log_terms)
    return min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in log_terms))


def score_task(model, tokenizer, task: str, records: list[dict], rng: random.Random) -> dict:
    """Corrected score of one mini task and its measured chance level."""
    new_tokens = get_task(task).max_new_tokens
    shuffled = records[:]
    rng.shuffle(shuffled)
    if task == "ner":
        counts, chance_counts = [0, 0, 0], [0, 0, 0]
        for kind in ner.NER_TYPES:
            outs = greedy_continuations(model, tokenizer, [ner.prompt(r, kind) for r in records], new_tokens)
            for out, record, other in zip(outs, records, shuffled):
                gold = ner.gold_entities(record["tokens"], record["tags"], kind)
                for i, c in enumerate(ner.entity_counts(ner.parse_entities(out), gold)):
                    counts[i] += c
                for i, c in enumerate(ner.entity_counts(ner.gold_entities(other["tokens"], other["tags"], kind), gold)):
                    chance_counts[i] += c
        return {"metric": "entity_f1", "score": ner.entity_f1(*counts), "chance": ner.entity_f1(*chance_counts)}
    if task == "reasoning":
        build = [lambda r: reasoning.prompt(r, hinted=True), lambda r: reasoning.prompt(r, hinted=False)]
    elif task == "open_domain_qa":
        build = [lambda r: open_domain_qa.prompt(r, answer_cue=True)]
    else:
        build = [get_task(task).prompt]
    scores = []
    for make_prompt in build:
        outs = greedy_continuations(model, tokenizer, [make_prompt(r) for r in records], new_tokens)
        if task == "open_domain_qa":
            scores.append(sum(open_domain_qa.exact_match(o, r["answer"]) for o, r in zip(outs, records)))
        elif task == "summarization":
            scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
            scores.append(sum(scorer.score(r["summary"], o)["rougeL"].fmeasure for o, r in zip(outs, records)))
        else:
            scores.append(sum(get_task(task).is_correct(o, r) for o, r in zip(outs, records)))
    scores = [s / len(records) for s in scores]
    if task == "summarization":
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        chance = sum(scorer.score(r["summary"], o["summary"])["rougeL"].fmeasure
                     for r, o in zip(records, shuffled)) / len(records)
        return {"metric": "rougeL_f", "score": scores[0], "chance": chance}
    if task == "open_domain_qa":
        chance = sum(open_domain_qa.exact_match(o["answer"][0], r["answer"])
                     for r, o in zip(records, shuffled)) / len(records)
        return {"metric": "exact_match", "score": scores[0], "chance": chance}
    majority = Counter(str(get_task(task).gold_label(r)) for r in records).most_common(1)[0][1] / len(records)
    n = len(records)
    result = {"metric": "accuracy", "score": scores[0], "chance": majority, "n": n,
              "p_value": binomial_upper_tail(n, round(scores[0] * n), majority)}
    if task == "reasoning":
        result["score_unhinted"] = scores[1]
        result["p_value_unhinted"] = binomial_upper_tail(n, round(scores[1] * n), majority)
    return result


def subject_patching_rates(model, tokenizer, world: World, n_pairs: int = 100, seed: int = 0) -> list[float]:
    """Per layer l: how often copying h^l at the subject's last token of question B into question A (same
    template, same relation, different answers) makes A's first answer token B's.

    Locate-and-edit methods (ROME, MEMIT) write at exactly that position; a model that looks its facts up
    elsewhere (at the last prompt token, from the raw name tokens) scores ~0 at every layer and cannot be
    edited by them, whatever their hyperparameters.
    """
    arch = architecture_of(model)
    rng = random.Random(seed)
    facts = sorted(world.facts.items())
    by_relation: dict[str, list[tuple[str, str]]] = {}
    for (subject, relation), obj in facts:
        by_relation.setdefault(relation, []).append((subject, obj))
    n_layers = arch.n_layers(model)
    blocks = [arch.layer(layer) for layer in range(n_layers)]
    device = next(model.parameters()).device
    hits = [0] * n_layers
    for _ in range(n_pairs):
        (subject_a, relation), answer_a = rng.choice(facts)
        subject_b, answer_b = rng.choice([(s, o) for s, o in by_relation[relation] if o != answer_a])
        template = rng.choice(RELATION_BY_NAME[relation].train_questions)
        expected = tokenizer(" " + answer_b, add_special_tokens=False)["input_ids"][0]
        encoded_a = tokenizer(template.format(subject_a), return_tensors="pt").to(device)
        encoded_b = tokenizer(template.format(subject_b), return_tensors="pt").to(device)
        index_a = subject_token_index(tokenizer, template, subject_a)
        index_b = subject_token_index(tokenizer, template, subject_b)
        with torch.no_grad(), record(model, blocks) as seen:
            model(**encoded_b)
        for layer, block in enumerate(blocks):
            source = seen[block].output[0, index_b]

            def patch(hidden: torch.Tensor, source=source, index=index_a) -> torch.Tensor:
                hidden = hidden.clone()
                hidden[0, index] = source
                return hidden

            with torch.no_grad(), rewrite_output(model, {block: patch}):
                hits[layer] += int(model(**encoded_a).logits[0, -1].argmax()) == expected
    return [h / n_pairs for h in hits]


def acceptance(model, tokenizer, world_root: Path | str, seed: int = 0) -> dict:
    """All acceptance numbers of a fact-world model, as a JSON-ready dict."""
    root = Path(world_root)
    world = load_world(root)
    one_hop = [(template.format(p), world.one_hop_answer(p, first, second))
               for p in world.people for first, second, template in ONE_HOP]
    report = {
        "fact_recall_train_templates": recall_accuracy(model, tokenizer, fact_questions(world, heldout=False)),
        "fact_recall_heldout_templates": recall_accuracy(model, tokenizer, fact_questions(world, heldout=True)),
        "one_hop_recall": recall_accuracy(model, tokenizer, one_hop),
        "heldout_perplexity": heldout_perplexity(model, tokenizer, read_texts(root / "corpus" / "heldout.jsonl")),
        "subject_patching_by_layer": subject_patching_rates(model, tokenizer, world, seed=seed),
        "tasks": {},
    }
    for task in TASK_FILES:
        records = read_task(root / "tasks", task)
        report["tasks"][task] = score_task(model, tokenizer, task, records, random.Random(seed))
    return report

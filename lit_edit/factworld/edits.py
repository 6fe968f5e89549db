"""Edit sets for the fact world, in the published ZsRE (EasyEdit, with portability) and CounterFact formats.

Every record asks to replace a true fact by a counterfactual object from the same value pool. Rephrases
and paraphrases use the *held-out* templates; locality prompts ask about facts that no record of the
same set edits, so a locality failure is a side effect and never a consequence of a later edit.
"""

from __future__ import annotations

import random

from lit_edit.factworld.schema import ONE_HOP, POOLS, RELATION_BY_NAME, RELATIONS
from lit_edit.factworld.world import World

GENERATION_PREFIXES = ("{} is known for", "People say that {}", "The life of {} is")
DISTRACTOR_SENTENCES = ("The weather was mild that year.", "Nobody expected the news.",
                        "The town fair opened on Monday.", "A letter arrived in the morning.")


def _counterfactual(rng: random.Random, relation_name: str, true_object: str) -> str:
    pool = POOLS[RELATION_BY_NAME[relation_name].pool]
    return rng.choice([o for o in pool if o != true_object])


def _split_edited_and_untouched(world: World, rng: random.Random, n: int):
    person_facts = [(s, r.name) for r in RELATIONS if r.subject_kind == "person" for s in world.people]
    rng.shuffle(person_facts)
    if n > len(person_facts) // 2:
        raise ValueError(f"at most {len(person_facts) // 2} edits fit this world (half its person facts), asked {n}")
    return person_facts[:n], person_facts[n:]


def _portability(world: World, subject: str, relation_name: str, new_object: str) -> dict | None:
    for first, second, template in ONE_HOP:
        if first == relation_name:
            answer = world.one_hop_answer(subject, first, second, first_object=new_object)
            return {"Recalled Relation": f"({new_object}, {second}, {answer})",
                    "New Question": template.format(subject), "New Answer": answer}
    return None


def zsre_record(world: World, subject: str, relation_name: str, new_object: str,
                locality: tuple[str, str]) -> dict:
    """One record in the EasyEdit ZsRE-with-portability format: edit ``(subject, relation_name)`` to ``new_object``,
    with the locality question about the fact ``locality`` = ``(subject, relation_name)`` (one the record's set
    leaves untouched). ``portability`` is present only for relations with a one-hop chain (birth/residence city,
    employer)."""
    relation = RELATION_BY_NAME[relation_name]
    true_object = world.object_of(subject, relation_name)
    src = relation.train_questions[0].format(subject)
    loc_subject, loc_relation = locality
    record = {
        "subject": subject,
        "src": src,
        "pred": true_object,
        "rephrase": relation.heldout_question.format(subject),
        "alt": new_object,
        "answers": [true_object],
        "loc": RELATION_BY_NAME[loc_relation].train_questions[0].format(loc_subject),
        "loc_ans": world.object_of(loc_subject, loc_relation),
        "cond": f"{true_object} >> {new_object} || {src}",
        "relation": relation_name,
    }
    portability = _portability(world, subject, relation_name, new_object)
    if portability is not None:
        record["portability"] = portability
    return record


def zsre_records_for(world: World, rng: random.Random, edited: list[tuple[str, str]],
                     untouched: list[tuple[str, str]]) -> list[dict]:
    """A ZsRE record per ``(subject, relation)`` of ``edited``, in order: for each, a counterfactual object and then
    a locality fact from ``untouched`` are drawn from ``rng`` (so a prefix of ``edited`` gives a prefix of the
    records)."""
    records = []
    for subject, relation_name in edited:
        new_object = _counterfactual(rng, relation_name, world.object_of(subject, relation_name))
        records.append(zsre_record(world, subject, relation_name, new_object, rng.choice(untouched)))
    return records


def zsre_records(world: World, n: int, seed: int) -> list[dict]:
    """``n`` records in the EasyEdit ZsRE-with-portability format (``zsre_mend_eval_portability_gpt4.json``) about
    facts drawn at random from the person facts (:func:`zsre_record`)."""
    rng = random.Random(seed)
    edited, untouched = _split_edited_and_untouched(world, rng, n)
    return zsre_records_for(world, rng, edited, untouched)


def counterfact_records(world: World, n: int, seed: int, n_neighbors: int = 10) -> list[dict]:
    """``n`` records in the CounterFact format (``counterfact.json``: ``requested_rewrite``, paraphrase,
    neighbourhood, attribute and generation prompts)."""
    rng = random.Random(seed)
    edited, _ = _split_edited_and_untouched(world, rng, n)
    edited_set = set(edited)
    records = []
    for case_id, (subject, relation_name) in enumerate(edited):
        relation = RELATION_BY_NAME[relation_name]
        true_object = world.object_of(subject, relation_name)
        new_object = _counterfactual(rng, relation_name, true_object)
        pool = POOLS[relation.pool]
        same_true = [p for p in world.people
                     if p != subject and world.object_of(p, relation_name) == true_object
                     and (p, relation_name) not in edited_set]
        same_new = [p for p in world.people if world.object_of(p, relation_name) == new_object]
        neighbors = rng.sample(same_true, min(n_neighbors, len(same_true)))
        attribute = rng.sample(same_new, min(n_neighbors, len(same_new)))
        records.append({
            "case_id": case_id,
            "pararel_idx": case_id,
            "requested_rewrite": {
                "prompt": relation.train_statements[0],
                "relation_id": relation_name,
                "subject": subject,
                "target_new": {"str": new_object, "id": f"{relation.pool}/{pool.index(new_object)}"},
                "target_true": {"str": true_object, "id": f"{relation.pool}/{pool.index(true_object)}"},
            },
            "paraphrase_prompts": [relation.heldout_statement.format(subject),
                                   f"{rng.choice(DISTRACTOR_SENTENCES)} {relation.heldout_statement.format(subject)}"],
            "neighborhood_prompts": [rng.choice(relation.train_statements).format(p) for p in neighbors],
            "attribute_prompts": [rng.choice(relation.train_statements).format(p) for p in attribute],
            "generation_prompts": [g.format(subject) for g in GENERATION_PREFIXES],
        })
    return records


def fact_questions(world: World, heldout: bool) -> list[tuple[str, str]]:
    """(question, answer) for every fact: training question templates, or the held-out one."""
    pairs = []
    for (subject, relation_name), obj in world.facts.items():
        relation = RELATION_BY_NAME[relation_name]
        templates = (relation.heldout_question,) if heldout else relation.train_questions
        pairs += [(t.format(subject), obj) for t in templates]
    return pairs


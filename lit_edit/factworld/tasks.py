"""Small versions of the 8 downstream task families over the fact world, in the real files' formats.

They are built from the world's facts, so the model learns them during pretraining (train split) and
editing damage shows up on the test split. :func:`gold_continuation` gives the text a perfect model
would generate after each prompt; the corpus builder appends it to the prompt for training.
"""

from __future__ import annotations

import random
from functools import partial

from lit_edit.factworld.render import biography, statement
from lit_edit.factworld.schema import COMPANIES, INSTRUMENTS, LANGUAGES, PETS, POOLS, RELATIONS, Relation
from lit_edit.factworld.world import World
from lit_edit.tasks import prompts

PERSON_RELATIONS = [r for r in RELATIONS if r.subject_kind == "person"]
POSITIVE = ["wonderful", "charming", "delightful", "brilliant", "moving", "lovely", "superb", "joyful"]
NEGATIVE = ["dull", "awful", "tedious", "clumsy", "bleak", "boring", "painful", "dreadful"]
ITEMS = ["apples", "books", "coins", "stamps", "pencils", "shells", "cards", "marbles"]


def _other(rng: random.Random, pool: list[str], value: str) -> str:
    return rng.choice([v for v in pool if v != value])


def _claim(world: World, rng: random.Random) -> tuple[str, Relation, str, bool, str]:
    """A person, one of their relations, its true object, a fair coin, and the claimed object (the true one
    when the coin says so, another of the relation's pool otherwise)."""
    person = rng.choice(world.people)
    relation = rng.choice(PERSON_RELATIONS)
    truth = world.object_of(person, relation.name)
    answer = rng.random() < 0.5
    return person, relation, truth, answer, truth if answer else _other(rng, POOLS[relation.pool], truth)


def _ptb(text: str) -> str:
    """Lower-cased, PTB-style spacing as in SST-2 and MuTual (``it 's``, `` ,``)."""
    return text.lower().replace("'s", " 's").replace(",", " ,").replace(".", " .").replace("?", " ?")


def closed_domain_qa(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for _ in range(n):
        person, relation, truth, answer, obj = _claim(world, rng)
        passage = biography(world, person, rng, 2) + " " + statement(relation.train_statements[0], person, truth)
        claim = statement(relation.train_statements[0], person, obj)[:-1]
        records.append({"question": f"is it true that {claim.lower()}", "title": person,
                        "answer": answer, "passage": passage})
    return records


def nli(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for i in range(n):
        person = rng.choice(world.people)
        relations = rng.sample(PERSON_RELATIONS, 2)
        premise = " ".join(statement(r.train_statements[0], person, world.object_of(person, r.name)) for r in relations)
        relation = rng.choice(relations)
        truth = world.object_of(person, relation.name)
        entailed = rng.random() < 0.5
        obj = truth if entailed else _other(rng, POOLS[relation.pool], truth)
        records.append({"index": i, "sentence1": premise,
                        "sentence2": statement(relation.train_statements[1], person, obj),
                        "label": "entailment" if entailed else "not_entailment"})
    return records


def _statements_around(world: World, rng: random.Random, person: str, relation: Relation, truth: str,
                       others: tuple[int, int]) -> str:
    """The true statement of ``relation`` among ``others[0]``–``others[1]`` true statements of the person's other
    relations (first wording each), at a random place; the statement alone when ``others`` is (0, 0)."""
    relevant = statement(relation.train_statements[0], person, truth)
    if not others[1]:
        return relevant
    pool = [r for r in PERSON_RELATIONS if r.name != relation.name]
    texts = [statement(r.train_statements[0], person, world.object_of(person, r.name))
             for r in rng.sample(pool, rng.randint(*others))]
    texts.insert(rng.randint(0, len(texts)), relevant)
    return " ".join(texts)


def closed_domain_qa_direct(world: World, rng: random.Random, n: int, others: tuple[int, int] = (0, 0)) -> list[dict]:
    """BoolQ records whose passage is the statement the claim is about, in the claim's own wording, among
    ``others`` statements of the person's other facts; a third of the questions keep the passage's casing. The
    comparison without the search (``others`` (0, 0)) or with a short one: a training warm-up (skills corpus),
    never a test set."""
    records = []
    for _ in range(n):
        person, relation, truth, answer, obj = _claim(world, rng)
        claim = statement(relation.train_statements[0], person, obj)[:-1]
        cased = rng.random() < 1 / 3
        records.append({"question": f"is it true that {claim if cased else claim.lower()}", "title": person,
                        "answer": answer, "passage": _statements_around(world, rng, person, relation, truth, others)})
    return records


def nli_direct(world: World, rng: random.Random, n: int, others: tuple[int, int] = (0, 0)) -> list[dict]:
    """RTE records whose premise is one statement (among ``others`` statements of the person's other facts) and
    whose hypothesis restates it (a third in the same wording) with the true or another object: the entailment
    without the search (``others`` (0, 0)) or with a short one, a training warm-up."""
    records = []
    for i in range(n):
        person, relation, truth, entailed, obj = _claim(world, rng)
        wording = relation.train_statements[0 if rng.random() < 1 / 3 else 1]
        records.append({"index": i, "sentence1": _statements_around(world, rng, person, relation, truth, others),
                        "sentence2": statement(wording, person, obj),
                        "label": "entailment" if entailed else "not_entailment"})
    return records


def sentiment(world: World, rng: random.Random, n: int) -> list[dict]:
    frames = ["the {instrument} concert by {person} was {adj} .", "{person} 's {food} tasted {adj} .",
              "a {adj} evening with {person} and a {pet} .", "{person} gave a {adj} talk about {language} poetry ."]
    records = []
    for _ in range(n):
        person = rng.choice(world.people)
        label = rng.random() < 0.5
        text = rng.choice(frames).format(
            person=person, adj=rng.choice(POSITIVE if label else NEGATIVE),
            instrument=world.object_of(person, "instrument"), food=world.object_of(person, "favorite_food"),
            pet=world.object_of(person, "pet"), language=world.object_of(person, "native_language"))
        records.append({"sentence": text.lower() + " ", "label": int(label)})
    return records


def dialogue(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for i in range(n):
        person = rng.choice(world.people)
        relation = rng.choice(PERSON_RELATIONS)
        truth = world.object_of(person, relation.name)
        question = relation.train_questions[0].format(person)
        article = _ptb(f"m : {question} f : {statement(relation.train_statements[0], person, truth)}")
        wrong = rng.sample([v for v in POOLS[relation.pool] if v != truth], 3)
        options = [_ptb(f"m : so {statement(relation.train_statements[0], person, v)}") for v in [truth, *wrong]]
        order = list(range(4))
        rng.shuffle(order)
        records.append({"answers": "ABCD"[order.index(0)], "options": [options[j] for j in order],
                        "article": article, "id": f"dev_{i + 1}"})
    return records


def reasoning(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for _ in range(n):
        person = rng.choice(world.people)
        item = rng.choice(ITEMS)
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        if rng.random() < 0.5:
            q = f"{person} has {a} {item}. {person} buys {b} more {item}. How many {item} does {person} have now?"
            c, expr = a + b, f"{a}+{b}"
            sol = f"{person} has {a} + {b} = <<{expr}={c}>>{c} {item} now."
        else:
            q = f"{person} has {a} bags with {b} {item} in each bag. How many {item} does {person} have?"
            c, expr = a * b, f"{a}*{b}"
            sol = f"{person} has {a} * {b} = <<{expr}={c}>>{c} {item}."
        records.append({"question": q, "answer": f"{sol}\n#### {c}"})
    return records


def open_domain_qa(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for _ in range(n):
        person = rng.choice(world.people)
        relation = rng.choice(PERSON_RELATIONS)
        truth = world.object_of(person, relation.name)
        passage = biography(world, person, rng, 2) + " " + statement(rng.choice(relation.train_statements), person, truth)
        records.append({"question": relation.train_questions[0].format(person).lower(), "answer": [truth],
                        "output": ["\n\n" + passage]})
    return records


def summarization(world: World, rng: random.Random, n: int) -> list[dict]:
    stories = [
        ("instrument", INSTRUMENTS, "I started playing the {x} last week.", "Cool, is it hard?", "A bit, but I love it.",
         "{a} has started playing the {x}."),
        ("residence_city", POOLS["cities"], "I am moving to {x} next month.", "Wow, why there?", "I found a flat there.",
         "{a} is moving to {x} next month."),
        ("employer", COMPANIES, "I got a new job at {x}!", "Congratulations!", "Thanks, I start on Monday.",
         "{a} got a new job at {x} and starts on Monday."),
        ("pet", PETS, "We adopted a {x} yesterday.", "How sweet! Send photos.", "I will tonight.",
         "{a} adopted a {x} yesterday and will send photos tonight."),
        ("native_language", LANGUAGES, "I am taking {x} lessons again.", "Good luck with that.", "Thanks, I need it.",
         "{a} is taking {x} lessons again."),
    ]
    records = []
    for i in range(n):
        a, b = rng.sample(world.people, 2)
        _, pool, line1, reply, line2, summary = rng.choice(stories)
        x = rng.choice(pool)
        first_b = b.split()[0]
        text = "\r\n".join([f"{a}: Hi {first_b}! {line1.format(x=x)}", f"{b}: {reply}", f"{a}: {line2}"])
        records.append({"id": str(100000 + i), "summary": summary.format(a=a, x=x), "dialogue": text})
    return records


def _tag_name(words: list[str], kind: str) -> list[tuple[str, str]]:
    return [(w, ("B-" if j == 0 else "I-") + kind) for j, w in enumerate(words)]


def ner(world: World, rng: random.Random, n: int) -> list[dict]:
    sentences = []
    for _ in range(n):
        person, other = rng.sample(world.people, 2)
        city = world.object_of(person, "birth_city")
        company = world.object_of(person, "employer")
        language = world.object_of(person, "native_language")
        frame = rng.randrange(5)
        per, other_per = _tag_name(person.split(), "PER"), _tag_name(other.split(), "PER")
        loc, org = _tag_name(city.split(), "LOC"), _tag_name(company.split(), "ORG")
        misc = [(language, "B-MISC")]

        def outside(*words: str) -> list[tuple[str, str]]:
            return [(w, "O") for w in words]

        tagged = [
            per + outside(",", "who", "was", "born", "in") + loc + outside(",", "works", "for") + org + outside("."),
            per + outside("met") + other_per + outside("in") + loc + outside("."),
            org + outside("hired") + per + outside("last", "year", "."),
            per + outside("speaks") + misc + outside("with") + other_per + outside("."),
            outside("the", "weather", "in") + loc + outside("was", "mild", "."),
        ][frame]
        tokens = [w for w, _ in tagged]
        tags = [t for _, t in tagged]
        pos = ["NNP" if t != "O" else ("," if w == "," else "." if w == "." else "NN") for w, t in tagged]
        chunks = ["B-NP" if t.startswith("B-") else "I-NP" if t.startswith("I-") else "O" for t in tags]
        sentences.append({"tokens": tokens, "pos": pos, "chunks": chunks, "tags": tags})
    return sentences


def entities(tokens: list[str], tags: list[str], kind: str) -> list[str]:
    """Entity strings of one type from IOB2 tags (a B- starts a span, following I- of the type extend it)."""
    spans, current = [], None
    for token, tag in zip(tokens, tags):
        if tag == f"B-{kind}":
            current = [token]
            spans.append(current)
        elif tag == f"I-{kind}" and current is not None:
            current.append(token)
        else:
            current = None
    return [" ".join(s) for s in spans]


GENERATORS = {
    "closed_domain_qa": closed_domain_qa, "nli": nli, "sentiment": sentiment, "dialogue": dialogue,
    "reasoning": reasoning, "open_domain_qa": open_domain_qa, "summarization": summarization, "ner": ner,
}


# Easier training-only versions of two comparison tasks: name -> (the task whose format and prompt they use, generator)
DIRECT_VARIANTS = {
    "closed_domain_qa_direct": ("closed_domain_qa", closed_domain_qa_direct),
    "nli_direct": ("nli", nli_direct),
    "closed_domain_qa_search": ("closed_domain_qa", partial(closed_domain_qa_direct, others=(1, 2))),
    "nli_search": ("nli", partial(nli_direct, others=(1, 2))),
}

GOLD = {
    "closed_domain_qa": lambda r: "yes" if r["answer"] else "no",
    "nli": lambda r: "True" if r["label"] == "entailment" else "False",
    "sentiment": lambda r: "positive" if int(r["label"]) else "negative",
    "dialogue": lambda r: r["answers"],
    "reasoning": lambda r: r["answer"].split("#### ")[1],
    "open_domain_qa": lambda r: r["answer"][0],
    "summarization": lambda r: r["summary"],
}


def training_examples(task: str, record: dict) -> list[tuple[str, int]]:
    """Prompt + gold continuation, the texts the model is pretrained on, each with the character offset where
    its gold answer begins (several texts for NER, one per type; two for reasoning, with and without the hint)."""
    if task == "ner":
        examples = []
        for kind in prompts.NER_TYPES:
            prompt = prompts.ner(record, kind)
            gold = ", ".join(entities(record["tokens"], record["tags"], kind)) or "none"
            examples.append((prompt + " " + gold, len(prompt) + 1))
        return examples
    gold = GOLD[task](record)
    texts = [getattr(prompts, task)(record)]
    if task == "reasoning":  # also learn the un-hinted (corrected) form
        texts.append(prompts.reasoning(record, hinted=False))
    return [(prompt + " " + gold, len(prompt) + 1) for prompt in texts]


def training_texts(task: str, record: dict) -> list[str]:
    """The texts of :func:`training_examples` (what ``corpus/train.jsonl`` holds for each training record)."""
    return [text for text, _ in training_examples(task, record)]

"""The zero-shot prompts of the general-ability evaluation (Gu et al., EMNLP 2024), one function per task.

Typos and missing spaces are kept verbatim from the reference harness (``docs/tasks.md`` §2-9), because
the published numbers were produced with them. ``open_domain_qa`` takes ``answer_cue`` (the corrected
form appends `` Answer:``), ``reasoning`` takes ``hinted`` (the reference feeds the gold rationale).
"""

from __future__ import annotations

NER_TYPES = {"PER": "Person", "LOC": "Location", "ORG": "Organization", "MISC": "Miscellaneous"}


def closed_domain_qa(record: dict) -> str:
    return ("Please answer the given question based on the passage. The answer should be exact 'yes' or 'no'. "
            f"passage: {record['passage']} question: {record['question']}. answer:")


def nli(record: dict) -> str:
    return f"{record['sentence1']} entails the {record['sentence2']}. True or False? answer:"


def sentiment(record: dict) -> str:
    return ("For each snippet of text,label the sentiment of the text as positive or negative.The answer should be "
            f"exact 'positive' or 'negative'. text: {record['sentence']} answer:")


def dialogue(record: dict) -> str:
    o = record["options"]
    return (f"Q: {record['article']} Which choice is correct? Answer Chioces: (A){o[0]}(B){o[1]}(C){o[2]}(D){o[3]}"
            " A: Among A through D, the answer is")


def reasoning(record: dict, hinted: bool = True) -> str:
    hint = record["answer"].split("#### ")[0] + " " if hinted else ""
    return f"Q: {record['question']} A:Let's think step by step. {hint}Therefore, the answer (arabic numerals) is:"


def open_domain_qa(record: dict, answer_cue: bool = True) -> str:
    prompt = (f"Refer to the passage below and answer the following question. Passage: {record['output'][0]} "
              f"Question: {record['question']}")
    return prompt + " Answer:" if answer_cue else prompt


def summarization(record: dict) -> str:
    return f"{record['dialogue']}\nTL;DR:"


def ner_sentence(tokens: list[str]) -> str:
    """Tokens joined by spaces, with ``,`` and ``.`` glued to the previous token (reference rule)."""
    text = ""
    for token in tokens:
        text += token if token in {",", "."} else " " + token
    return text[1:]


def ner(record: dict, entity_type: str) -> str:
    return f"Please identify {NER_TYPES[entity_type]} Entity from the given text. Text: {ner_sentence(record['tokens'])} Entity:"

"""The batched greedy decoder against Hugging Face ``generate``, one prompt at a time, on every supported family."""

from __future__ import annotations

import torch

from lit_edit.generation import generate_greedy
from lit_edit.models import load_model_and_tokenizer

PROMPTS = ["Anna lives in", "The favorite color of Bob Smith is", "Q: where", "a b c d e f g h i j k l m n o p",
           "The native language of Gimais Rebrazu is Korean and the pet of"]


def test_batched_decoder_equals_generate_one_prompt_at_a_time(tiny_model_dir):
    family, folder = tiny_model_dir
    model, tokenizer = load_model_and_tokenizer(str(folder))
    batched = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3)
    for prompt, generation in zip(PROMPTS, batched):
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            reference = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                       do_sample=False, num_beams=1, pad_token_id=tokenizer.eos_token_id,
                                       eos_token_id=tokenizer.eos_token_id)[0, ids.shape[1]:].tolist()
        if tokenizer.eos_token_id in reference:
            reference = reference[: reference.index(tokenizer.eos_token_id) + 1]
        assert generation.new_ids == reference, (family, prompt)
        assert generation.prompt_ids == ids[0].tolist()

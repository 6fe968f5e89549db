"""The LightningModule that pretrains a small causal LM (the fact-world model) and exports it.

``fit`` trains from a fresh configuration (or continues from ``name_or_path``) and, at the end, writes
a Hugging Face folder (config, safetensors, tokenizer) to ``export_dir``. ``test`` reports the
perplexity of the held-out text.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from lit_edit.export_folder import ExportTarget, export_hf, training_export_target
from lit_edit.models.architectures import architecture_of
from lit_edit.models.loading import load_model, load_tokenizer
from lit_edit.modules.subject_routing import composition_gap, routing_leak


class CausalLMModule(L.LightningModule):
    """Pretrain or evaluate a causal LM.

    Args:
        tokenizer: tokenizer folder; its vocabulary size sizes a fresh model (default: ``name_or_path``).
        architecture: Hugging Face ``model_type`` of a fresh model (``gpt2``, ``llama``, ...).
        model_config: keyword arguments of the fresh model's config (``n_layer``, ``n_embd``...).
        name_or_path: start from this pretrained model instead of a fresh one.
        lr: peak AdamW learning rate (linear warm-up, cosine decay to 10 %).
        weight_decay: AdamW weight decay on matrices.
        warmup_steps: warm-up length in optimizer steps.
        export_dir: where ``fit`` writes the final Hugging Face model (and tokenizer); None: nowhere. A new or empty
            folder, or a previous lit-edit export with ``overwrite_export`` (checked before training;
            ``lit_edit.export_folder``).
        overwrite_export: replace a previous lit-edit export in ``export_dir``.
        seed: seed of the fresh model's initialisation.
        routing_weight: weight of the subject-routing penalty (leak + composition gap) on batches that carry
            routing targets (``TextCorpusDataModule(subject_routing=True)``; ``lit_edit.modules.subject_routing``).
        answer_weight: weight of the answer loss (:func:`answer_loss`, the mean NLL of the marked answer tokens)
            added to the LM loss on batches with an ``answer_mask`` (the skills corpus); 0 leaves them plain text.
    """

    def __init__(self, tokenizer: str | None = None, architecture: str = "gpt2", model_config: dict | None = None,
                 name_or_path: str | None = None, lr: float = 1e-3, weight_decay: float = 0.01,
                 warmup_steps: int = 200, export_dir: str | None = None, seed: int = 0,
                 routing_weight: float = 1.0, answer_weight: float = 0.0, overwrite_export: bool = False):
        super().__init__()
        self.save_hyperparameters(ignore=["overwrite_export"])   # a decision of this call, not of the checkpoint
        self.overwrite_export = overwrite_export
        if not (tokenizer or name_or_path):
            raise ValueError("CausalLMModule needs `tokenizer` (for a fresh model) or `name_or_path`")
        self.tokenizer = load_tokenizer(tokenizer or name_or_path)
        if name_or_path:
            self.model = load_model(name_or_path).train()
        else:
            config = AutoConfig.for_model(architecture, vocab_size=len(self.tokenizer),
                                          bos_token_id=self.tokenizer.bos_token_id,
                                          eos_token_id=self.tokenizer.eos_token_id,
                                          pad_token_id=self.tokenizer.pad_token_id, **(model_config or {}))
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                self.model = AutoModelForCausalLM.from_config(config)
        architecture_of(self.model)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The LM loss and the extra terms of the batch: the routing penalties for a batch with routing targets
        (they need the attention probabilities, so such batches run the eager attention) and the answer loss for
        one with marked answers (when ``answer_weight`` is set)."""
        inputs = {k: v for k, v in batch.items() if not k.startswith("routing_") and k != "answer_mask"}
        routed = "routing_forbidden" in batch
        if routed:
            self._use_attention("eager")
        output = self.model(**inputs, output_attentions=routed)
        terms = {}
        if routed:
            terms = {"routing_leak": routing_leak(output.attentions, batch["routing_forbidden"]),
                     "routing_composition_gap": composition_gap(output.attentions[0], batch["routing_compose"])}
        if self.hparams.answer_weight and "answer_mask" in batch and batch["answer_mask"].any():
            terms["answer_loss"] = answer_loss(output.logits, batch["input_ids"], batch["answer_mask"])
        return output.loss, terms

    def _use_attention(self, name: str) -> None:
        if self.model.config._attn_implementation != name:
            self.model.set_attn_implementation(name)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, penalties = self(batch)
        size = batch["input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in penalties.items():
            self.log(f"train/{name}", value, prog_bar=True, batch_size=size)
            weight = self.hparams.answer_weight if name == "answer_loss" else self.hparams.routing_weight
            loss = loss + weight * value
        return loss

    def _token_nll(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(),
                                                ignore_index=-100, reduction="sum")
        return nll, (labels != -100).sum()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        nll, n = self._token_nll(batch)
        self.log("val/loss", nll / n, prog_bar=True, batch_size=int(n))

    def on_test_epoch_start(self) -> None:
        self._nll_sum, self._token_count = 0.0, 0

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        nll, n = self._token_nll(batch)
        self._nll_sum += float(nll)
        self._token_count += int(n)

    def on_test_epoch_end(self) -> None:
        totals = self.all_gather(torch.tensor([self._nll_sum, float(self._token_count)], dtype=torch.float64))
        totals = totals.reshape(-1, 2).sum(0)
        self.log("test/perplexity", math.exp(totals[0] / max(totals[1], 1)), rank_zero_only=True)

    def configure_optimizers(self):
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=self.hparams.lr,
                                      betas=(0.9, 0.98))
        total = max(self.trainer.estimated_stepping_batches, 1)
        warmup = min(self.hparams.warmup_steps, total // 2)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @property
    def export_target(self) -> ExportTarget | None:
        h = self.hparams
        return training_export_target(h.export_dir, self.overwrite_export, h.name_or_path) if h.export_dir else None

    def on_fit_start(self) -> None:
        if self.export_target is not None:
            self.export_target.check()     # before training, not after it

    def on_fit_end(self) -> None:
        self._use_attention("sdpa")  # exported models use the fast attention
        if self.export_target is not None and self.trainer.is_global_zero:
            export_hf(self.model, self.tokenizer, self.export_target)


def answer_loss(logits: torch.Tensor, input_ids: torch.Tensor, answer_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of the answer tokens: −(1/|A|) Σ_{t ∈ A} log p(x_t | x_<t), A = ``answer_mask``'s tokens
    (each predicted from the position before it; a first token cannot be an answer)."""
    targets = answer_mask[:, 1:]
    log_probs = torch.log_softmax(logits[:, :-1][targets].float(), dim=-1)
    return -log_probs.gather(-1, input_ids[:, 1:][targets][:, None]).mean()

"""The LightningModule that trains MEND's editor network (``fit``; docs/methods.md §5, "Training objective").

The base model is frozen and kept outside the module tree: Lightning and DDP see only the editor network, so
checkpoints hold the network alone and DDP synchronises only its gradients. Each training example is its own
edit: its factors come from one batched backward pass of the base model, and the edited model runs as the
base model plus each row's low-rank edit (:func:`lit_edit.editing.mend.edited_forward`), so no weight is
copied or changed.

Per example, with ``W̃ = W − η ∇̃W``:
``L = c_edit · NLL(f_W̃(edit input), target) + c_loc · KL(p_W(loc) ‖ p_W̃(loc))`` over the locality answer's
positions (the logit at t − 1 scores token t; the reference's one-position offset is not reproduced, §13).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import nn

from lit_edit.editing.mend import edited_forward, gradient_factors, module_io_sizes, per_row_target_nll, transformed_factors
from lit_edit.editing.mend_checkpoint import save_mend_checkpoint
from lit_edit.editing.mend_network import MendNetwork
from lit_edit.editing.requests import EditRequest, EditRequestError
from lit_edit.errors import UserError
from lit_edit.export_folder import ExportFailedError, new_folder, training_export_target
from lit_edit.models.architectures import Architecture, architecture_of
from lit_edit.models.loading import load_model_and_tokenizer
from lit_edit.scoring import labelled_batch
from lit_edit.stats import weights_sha256

EDIT_LOSS_INPUTS = ("prompt", "rephrase", "both")


def edited_module_names(arch: Architecture, layers: Sequence[int], modules: Sequence[str]) -> list[str]:
    """Module paths for ``modules`` in every layer: ``ffn_in`` / ``ffn_out`` (the architecture's FFN projections)
    or a template with ``{}`` for the layer index (e.g. ``model.layers.{}.mlp.up_proj``)."""
    named = {"ffn_in": arch.ffn_in, "ffn_out": arch.ffn_out}
    templates = []
    for module in modules:
        if module not in named and "{}" not in module:
            raise ValueError(f"MEND module {module!r} is neither 'ffn_in', 'ffn_out' nor a template with '{{}}'")
        templates.append(named.get(module, module))
    return [template.format(layer) for layer in layers for template in templates]


class MendModule(L.LightningModule):
    """Train a MEND editor for a frozen base model.

    Args:
        name_or_path: the base model folder.
        layers / modules: the edited layers and, per layer, the edited linear modules (MEND on GPT-2 XL: the
            last 3 layers' FFN input and output projections).
        rank / n_hidden / shared / edit_lr: the editor network (:class:`MendNetwork`).
        lr: Adam learning rate of the network; lr_lr: of the edit learning rates (the reference's two Adams,
            here two parameter groups of one Adam, which is the same update).
        edit_loss_weight / locality_loss_weight: c_edit and c_loc (reference 0.1 and 1.0).
        edit_loss_on: where the edited model must produce the target: ``prompt`` (the edit prompt itself, as
            EasyEdit trains), ``rephrase`` (its paraphrase, as the MEND paper trains) or ``both``.
        max_length: tokens per example (the prompt's start is cut first).
        export_dir: where the trained editor is written at the end of ``fit`` (the best validation checkpoint
            when a ModelCheckpoint monitored one); None: a new folder ``mend`` in the run's log folder. The folder
            is printed when training starts and ends. An existing editor (e.g. a shipped one) is replaced only with
            ``overwrite_export`` (``lit_edit.export_folder``; checked before training).
        overwrite_export: replace a previous lit-edit export in ``export_dir``.
    """

    def __init__(self, name_or_path: str = "checkpoints/factworld-gpt2", layers: Sequence[int] = (1, 2, 3),
                 modules: Sequence[str] = ("ffn_in", "ffn_out"), rank: int = 1920, n_hidden: int = 1,
                 shared: bool = True, edit_lr: float = 1e-4, lr: float = 1e-6, lr_lr: float = 1e-4,
                 edit_loss_weight: float = 0.1, locality_loss_weight: float = 1.0, edit_loss_on: str = "prompt",
                 max_length: int = 40, export_dir: str | None = None, overwrite_export: bool = False):
        super().__init__()
        if edit_loss_on not in EDIT_LOSS_INPUTS:
            raise ValueError(f"edit_loss_on {edit_loss_on!r} is not one of {EDIT_LOSS_INPUTS}")
        self.save_hyperparameters(ignore=["overwrite_export"])   # a decision of this call, not of the checkpoint
        self.overwrite_export = overwrite_export
        base, self.tokenizer = load_model_and_tokenizer(name_or_path)
        base.requires_grad_(False)
        object.__setattr__(self, "_base", base)      # outside the module tree: not trained, saved or DDP-wrapped
        self.arch = architecture_of(base)
        for layer in layers:
            self.arch.check_layer(base, layer)
        self.module_names = edited_module_names(self.arch, layers, modules)
        shapes = {}
        for name in self.module_names:
            try:
                shapes[name] = module_io_sizes(base.get_submodule(name))
            except AttributeError:
                raise ValueError(f"MEND module {name} (from modules {list(modules)}) does not exist in "
                                 f"{name_or_path!r}") from None
        self.network = MendNetwork(shapes, rank, n_hidden, edit_lr, shared)

    @property
    def base(self) -> nn.Module:
        if self._base.device != self.device:
            self._base.to(self.device)
        return self._base

    def _reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes, so that every rank's running moments see every rank's tokens."""
        if self._trainer is None or self.trainer.world_size == 1:
            return tensor
        return self.trainer.strategy.reduce(tensor, reduce_op="sum")

    def _batch(self, prompts: Sequence[str], answers: Sequence[str]):
        return labelled_batch(self.tokenizer, prompts, answers, self.device, self.hparams.max_length)

    def _edit_inputs(self, requests: Sequence[EditRequest]) -> tuple[list[str], list[str], list[int]]:
        """Prompts, targets and the edit (group) of each row the edit loss is taken on."""
        rows = []
        for group, request in enumerate(requests):
            if self.hparams.edit_loss_on in ("prompt", "both"):
                rows.append((request.prompt.format(request.subject), request.target_new, group))
            if self.hparams.edit_loss_on in ("rephrase", "both"):
                if not request.rephrase_prompts:
                    raise EditRequestError(request.record_id, "rephrase_prompts",
                                           f"is empty, but edit_loss_on is {self.hparams.edit_loss_on!r}")
                rows.append((request.rephrase_prompts[0], request.target_new, group))
        prompts, targets, groups = zip(*rows)
        return list(prompts), list(targets), list(groups)

    def _locality_inputs(self, requests: Sequence[EditRequest]) -> tuple[list[str], list[str]]:
        for request in requests:
            if not request.locality:
                raise EditRequestError(request.record_id, "locality", "is empty: MEND's locality loss needs a probe")
        return [r.locality[0].prompt for r in requests], [r.locality[0].answer for r in requests]

    def edit_losses(self, requests: Sequence[EditRequest], generality: bool = False) -> dict[str, torch.Tensor]:
        """Each request edits the base model on its own; the losses and success rates averaged over requests.
        ``generality``: also the target token accuracy on each request's first rephrase (validation)."""
        base, n = self.base, len(requests)
        input_ids, mask, labels = self._batch([r.prompt.format(r.subject) for r in requests],
                                              [r.target_new for r in requests])
        factors, nll_before = gradient_factors(base, self.module_names, input_ids, mask, labels,
                                               row_groups=torch.arange(n, device=self.device))
        edits = transformed_factors(self.network, factors, n, reduce=self._reduce if self.training else None)

        prompts, targets, groups = self._edit_inputs(requests)
        edit_ids, edit_mask, edit_labels = self._batch(prompts, targets)
        edit_groups = torch.tensor(groups, device=self.device)
        with edited_forward(base, edits, edit_groups):
            edit_logits = base(input_ids=edit_ids, attention_mask=edit_mask).logits
        edit_nll = per_row_target_nll(edit_logits, edit_labels)

        loc_ids, loc_mask, loc_labels = self._batch(*self._locality_inputs(requests))
        with torch.no_grad():
            loc_before = base(input_ids=loc_ids, attention_mask=loc_mask).logits
        with edited_forward(base, edits, torch.arange(n, device=self.device)):
            loc_after = base(input_ids=loc_ids, attention_mask=loc_mask).logits
        scored = (loc_labels[:, 1:] != -100)
        before = loc_before[:, :-1][scored].float().log_softmax(-1)
        after = loc_after[:, :-1][scored].float().log_softmax(-1)
        locality_kl = (before.exp() * (before - after)).sum(-1).mean()

        h = self.hparams
        extra = {}
        if generality and all(r.rephrase_prompts for r in requests):
            ids, rephrase_mask, rephrase_labels = self._batch([r.rephrase_prompts[0] for r in requests],
                                                              [r.target_new for r in requests])
            with torch.no_grad(), edited_forward(base, edits, torch.arange(n, device=self.device)):
                extra["rephrase_success"] = _token_accuracy(base(input_ids=ids, attention_mask=rephrase_mask).logits,
                                                            rephrase_labels)
        return extra | {"loss": h.edit_loss_weight * edit_nll.mean() + h.locality_loss_weight * locality_kl,
                "loss_edit": edit_nll.mean(), "loss_locality": locality_kl,
                "nll_before": nll_before / n,
                "edit_success": _token_accuracy(edit_logits, edit_labels),
                "locality": (before.argmax(-1) == after.argmax(-1)).float().mean()}

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch   # a batch is a list of EditRequest (strings); tensors are built where they are used

    def training_step(self, batch: list[EditRequest], batch_idx: int) -> torch.Tensor:
        results = self.edit_losses(batch)
        for key, value in results.items():
            self.log(f"train/{key}", value, prog_bar=key in ("loss", "edit_success"), batch_size=len(batch))
        self.log("train/edit_lr_mean", self.network.edit_lrs.mean(), batch_size=len(batch))
        return results["loss"]

    def validation_step(self, batch: list[EditRequest], batch_idx: int) -> None:
        results = self.edit_losses(batch, generality=True)   # gradient_factors enables the backward it needs
        for key, value in results.items():
            self.log(f"val/{key}", value.detach(), prog_bar=key in ("loss", "edit_success", "locality"),
                     batch_size=len(batch), sync_dist=True)

    def configure_optimizers(self):
        lrs = self.network.edit_lrs
        others = [p for p in self.network.parameters() if p is not lrs]
        return torch.optim.Adam([{"params": others, "lr": self.hparams.lr},
                                 {"params": [lrs], "lr": self.hparams.lr_lr}])

    def on_fit_start(self) -> None:
        """Decide and check where the editor will be written, before training (a refusal costs nothing yet)."""
        h = self.hparams
        folder = h.export_dir or new_folder(Path(self.trainer.log_dir or self.trainer.default_root_dir) / "mend")
        self.export_target = training_export_target(folder, self.overwrite_export, h.name_or_path)
        self.export_target.check()
        if self.trainer.is_global_zero:
            print(f"[lit-edit] the trained MEND editor will be written to {folder}", flush=True)

    def on_fit_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        callback = self.trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") if callback is not None else ""
        summary = {"global_step": self.trainer.global_step, "epochs": self.trainer.current_epoch}
        if best:
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            self.network.load_state_dict({k.removeprefix("network."): v for k, v in state.items()})
            summary |= {"checkpoint": str(best), "monitor": callback.monitor,
                        "best_score": float(callback.best_model_score)}
        h = self.hparams
        try:
            folder = save_mend_checkpoint(self.export_target, self.network, {
                "base_model": h.name_or_path, "architecture": self.arch.name, "layers": list(h.layers),
                "module_templates": list(h.modules), "base_weights_sha256": weights_sha256(self._base),
                "network": {"rank": h.rank, "n_hidden": h.n_hidden, "edit_lr": h.edit_lr, "shared": h.shared},
                "training": summary | {key: h[key] for key in ("lr", "lr_lr", "edit_loss_weight",
                                                             "locality_loss_weight", "edit_loss_on", "max_length")}})
        except (UserError, OSError) as error:
            kept = f"the trained network is kept in {best}" if best else "Lightning's checkpoints (if any) are kept"
            raise ExportFailedError(f"training finished, but writing the MEND editor to {self.export_target.path} "
                                    f"failed: {error}; {kept}") from error
        print(f"[lit-edit] MEND editor written to {folder}; edit with it: --model.init_args.editor.init_args."
              f"checkpoint {folder}", flush=True)


def _token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of labelled tokens the model predicts (argmax at t − 1 == token t)."""
    labels = labels[:, 1:]
    scored = labels != -100
    return (logits[:, :-1].argmax(-1)[scored] == labels[scored]).float().mean()

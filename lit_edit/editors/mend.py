"""MEND as an editor: a trained editor network turns the edit's gradient into a weight change (docs/methods.md §5).

A batch of requests is one edit: the loss is the sum over requests of each one's mean target NLL (so a request
weighs the same in a batch as alone, as during training), and every edited matrix changes once,
``W ← W − lr_scale · η_p ∇̃W``. The network is trained by ``python main.py fit --config configs/fit/mend_*.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.editing.mend import edit_weights, gradient_factors
from lit_edit.editing.mend_checkpoint import check_checkpoint_fits, load_mend_checkpoint, read_mend_description
from lit_edit.editing.options import checked_layers
from lit_edit.editing.requests import EditRequest
from lit_edit.editors.base import EditContext, Editor, EditOutcome
from lit_edit.models.architectures import Architecture
from lit_edit.scoring import labelled_batch
from lit_edit.stats import weights_sha256


class MEND(Editor):
    """Edit with a trained MEND network.

    Args:
        checkpoint: the folder written by MEND training (``mend.json`` + ``mend.safetensors``).
        lr_scale: multiplies every learned edit learning rate (the reference's ``lr_scale``, 1 by default).
        layers: the layers this run expects the editor to edit; None accepts the checkpoint's. Set it to make a
            config fail loudly when the checkpoint edits other layers.
        max_length: tokens per request (the prompt's start is cut first), as in training.
    """

    name = "mend"

    def __init__(self, checkpoint: str = "checkpoints/mend-factworld-gpt2", lr_scale: float = 1.0,
                 layers: Sequence[int] | None = None, max_length: int = 40):
        self.checkpoint = checkpoint
        self.lr_scale = lr_scale
        self.layers = None if layers is None else list(checked_layers(layers))
        self.max_length = max_length
        self._network = None
        self._training = None

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        check_checkpoint_fits(self.checkpoint, read_mend_description(self.checkpoint), model, arch, context.model_name,
                              self.layers, weights_sha256(model))
        network, meta = load_mend_checkpoint(self.checkpoint)
        self._network = network.to(next(model.parameters()).device)
        self._training = meta.get("training")

    def network_or_fail(self):
        if self._network is None:
            raise RuntimeError("MEND.setup must run before the first edit (it loads the editor network)")
        return self._network

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        """The edited modules' weights, from the checkpoint's description (readable before :meth:`setup`)."""
        return [f"{name}.weight" for name in read_mend_description(self.checkpoint)["modules"]]

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        device = next(model.parameters()).device
        input_ids, mask, labels = labelled_batch(tokenizer, [r.prompt.format(r.subject) for r in requests],
                                                 [r.target_new for r in requests], device, self.max_length)
        factors, loss = gradient_factors(model, self.network_or_fail().module_names, input_ids, mask, labels)
        deltas = edit_weights(model, self._network, factors, self.lr_scale)
        return EditOutcome(deltas, {"edit_nll_before": float(loss) / len(requests),
                                    "edit_tokens": float(len(next(iter(factors.values())).inputs))})

    def hyperparameters(self) -> dict:
        return super().hyperparameters() | {"trained": self._training}

"""Lightning checkpoints (``--ckpt_path``) are read as tensors and plain data only, never as arbitrary pickles.

Unpickling runs code, so a checkpoint from elsewhere must load with ``torch.load(weights_only=True)``. Lightning
leaves ``weights_only`` unset by default, which means ``False`` for a URL (``http...``) and, before torch 2.6, for
every file. lit-edit sets it to ``True`` when unset, and refuses ``--weights_only false`` for a remote checkpoint
(download it, check it, and give the local path). The project's own loads pass ``weights_only=True`` explicitly
(``lit_edit.run_state``, ``lit_edit.modules.mend``).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from lit_edit.errors import UserError


def is_remote(path: Any) -> bool:
    """Whether ``path`` is a URL (``https://...``, ``s3://...``) rather than a local file."""
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def safe_checkpoint_options(options: MutableMapping) -> None:
    """Set ``weights_only`` to True in a subcommand's options (``ckpt_path``, ``weights_only``) when unset.

    Raises:
        UserError: ``weights_only`` is false for a remote ``ckpt_path``.
    """
    if "weights_only" not in options:
        return
    if options["weights_only"] is None:
        options["weights_only"] = True
    elif options["weights_only"] is False and is_remote(options.get("ckpt_path")):
        raise UserError(f"--weights_only false with the remote --ckpt_path {options['ckpt_path']}: unpickling a "
                        "downloaded checkpoint can run any code in it. Download it, check it and pass the local "
                        "path, or leave --weights_only unset (tensors and plain data only)")

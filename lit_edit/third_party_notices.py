"""The third-party notices a run would print that the project cannot act on, silenced in one place so that the
progress bars and the end-of-run summary are what a user sees. Each filter names the message, its category and the
module it is reported from; the project's own warnings and any other third-party warning still show."""

from __future__ import annotations

import logging
import re
import warnings

# (message start, category, module the warning is reported from, why it cannot be acted on here)
IGNORED_WARNINGS = (
    # lit_edit.cli.main passes the command line to LightningCLI after resolving its config paths against the
    # project (lit_edit/paths.py); Lightning warns whenever ``args`` is given while sys.argv has arguments.
    ("LightningCLI's args parameter is intended to run from within Python", UserWarning, "lightning.pytorch.cli"),
    # Lightning's own pytree helper builds torch's deprecated LeafSpec on every batch transfer; only a Lightning
    # release can change it.
    ("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "lightning.pytorch.utilities._pytree"),
    # The editing and MEND modules hand their batches (lists of requests, no tensors) to the step unchanged by
    # overriding the hook in the module on purpose; Lightning announces that it uses the module's hook, as intended.
    ("You have overridden `transfer_batch_to_device` in `LightningModule` but have passed in a `LightningDataModule`",
     UserWarning, "lightning.pytorch.trainer.connectors.data_connector"),
)

# Lightning logs these advertisements for its cloud services (litlogger, litmodels) at the start of every run.
LIGHTNING_RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"
IGNORED_LOG_PREFIXES = ("💡 Tip: For seamless cloud",)


class _DropLightningTips(logging.Filter):
    """Drops log records that start with one of :data:`IGNORED_LOG_PREFIXES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(IGNORED_LOG_PREFIXES)


_TIP_FILTER = _DropLightningTips()


def silence_third_party_notices() -> None:
    """Install the filters (idempotent: filters are not duplicated when called again)."""
    for message, category, module in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category, module=re.escape(module))
    logger = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER)
    if _TIP_FILTER not in logger.filters:
        logger.addFilter(_TIP_FILTER)

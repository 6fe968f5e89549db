"""The custom Lightning loop of editing runs and the Trainer that installs it."""

from lit_edit.loops.consecutive import ConsecutiveEditingLoop, EditTrainer

__all__ = ["ConsecutiveEditingLoop", "EditTrainer"]

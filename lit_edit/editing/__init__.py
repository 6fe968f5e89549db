"""Knowledge editing: edit requests and their readers, the fact-token position rule."""

from lit_edit.editing.positions import RULES, fill_subject, subject_token_index, subject_token_indices
from lit_edit.editing.requests import (
    EditRequest,
    EditRequestError,
    EditSet,
    LocalityProbe,
    PortabilityProbe,
    read_counterfact,
    read_zsre,
    select,
    separate_shared_subjects,
    shared_subject_count,
)

__all__ = ["RULES", "EditRequest", "EditRequestError", "EditSet", "LocalityProbe", "PortabilityProbe",
           "fill_subject", "read_counterfact", "read_zsre", "select", "separate_shared_subjects",
           "shared_subject_count", "subject_token_index", "subject_token_indices"]

"""Grids of editing runs and reports over them (docs/experiments.md): ``grid`` reads an experiment file, ``sweep``
runs its points, ``table`` reads run folders into tidy tables, ``figures`` and ``report`` write the papers' layouts.
The top layer: it imports the rest of lit-edit, and only ``lit_edit.tools`` imports it."""

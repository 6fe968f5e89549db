"""FT-L2's projection onto the Frobenius ball, against the scaling written by hand (docs/methods.md §1)."""

from __future__ import annotations

import torch

from lit_edit.editing.ft_l2 import project_to_ball


def test_a_change_outside_the_ball_is_shortened_to_the_radius_in_its_own_dtype():
    delta = torch.tensor([[3.0, 0.0], [0.0, 4.0]])          # ‖Δ‖_F = 5
    projected = project_to_ball(delta, 2.5)
    assert projected.dtype == torch.float32
    assert torch.equal(projected, torch.tensor([[1.5, 0.0], [0.0, 2.0]]))
    half = project_to_ball(delta.to(torch.bfloat16), 2.5)
    assert half.dtype == torch.bfloat16


def test_a_change_inside_or_on_the_sphere_is_kept_as_it_is():
    delta = torch.tensor([3.0, 4.0])
    assert torch.equal(project_to_ball(delta, 5.0), delta)
    assert torch.equal(project_to_ball(delta, 7.0), delta)

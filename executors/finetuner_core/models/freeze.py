"""Freezing by named layer groups: a group is a module path, and freezing is safe to call again.

Each call sets every parameter's ``requires_grad`` from scratch, so calling it with fewer groups later
unfreezes the rest (progressive unfreezing is the same call).
"""

from __future__ import annotations

from torch import nn


def layer_groups(module: nn.Module, depth: int = 3) -> list[str]:
    """Module paths up to ``depth`` levels deep that hold parameters, in registration order."""
    groups: list[str] = []
    for name, child in module.named_modules():
        if name and name.count(".") < depth and any(True for _ in child.parameters()):
            groups.append(name)
    return groups


def freeze(module: nn.Module, groups: bool | list[str], trainable: list[nn.Module] = ()) -> int:
    """Freeze ``module`` (``True``), nothing (``False``) or the named groups; ``trainable`` stay trainable.

    Returns the number of trainable parameters. An unknown group name raises ``ValueError`` naming the
    groups that exist.
    """
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    if groups is True:
        module.requires_grad_(False)
    elif groups:
        known = dict(module.named_modules())
        unknown = [group for group in groups if group not in known]
        if unknown:
            raise ValueError(
                f"unknown layer group(s) {unknown}; groups of this model: {', '.join(layer_groups(module)[:60])}"
            )
        for group in groups:
            known[group].requires_grad_(False)
    for keep in trainable:
        keep.requires_grad_(True)
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

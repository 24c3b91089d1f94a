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


def parameter_groups(module: nn.Module, paths: list[str]) -> list[list[str]]:
    """The parameter names (relative to ``module``) under each module path, one list per path, in order."""
    known = dict(module.named_modules())
    missing = [path for path in paths if path not in known]
    if missing:
        raise ValueError(f"unknown layer group(s) {missing}; groups of this model: {', '.join(layer_groups(module))}")
    return [[f"{path}.{name}" for name, _ in known[path].named_parameters()] for path in paths]


def lock(tower: nn.Module, groups: list[list[str]], unlocked: int = 0, what: str = "tower") -> int:
    """Lock ``tower`` (open_clip's semantics): freeze every parameter, then make the last ``unlocked`` of its
    ``groups`` (parameter names relative to ``tower``, ordered from the input end) trainable again.

    Unlike :func:`freeze` this only acts on ``tower``, so it adds to what was frozen elsewhere in the model.
    Returns the number of trainable parameters left in ``tower``.
    """
    if unlocked > len(groups):
        raise ValueError(f"{unlocked} unlocked groups asked for, but the {what} has {len(groups)} layer groups")
    tower.requires_grad_(False)
    parameters = dict(tower.named_parameters())
    for group in groups[len(groups) - unlocked :]:
        for name in group:
            parameters[name].requires_grad_(True)
    return sum(p.numel() for p in tower.parameters() if p.requires_grad)

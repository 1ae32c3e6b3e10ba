"""Model soups: average the weights of checkpoints and of runs with different seeds.

Fine-tuned from one base, such models sit in one loss basin, and their weight average is often
better than any of them (Wortsman et al. 2022, "Model soups"). Not always: so the soup is kept
only when the dev metric says it is at least as good as the best single ingredient.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ragkit.errors import ConfigError

__all__ = ["SoupDecision", "average_state_dicts", "make_soup", "select_soup"]


def average_state_dicts(
    states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """The (weighted) mean of each floating-point tensor; other tensors must agree exactly."""
    if not states:
        raise ConfigError("a soup needs at least one model")
    weights = list(weights) if weights is not None else [1.0] * len(states)
    if len(weights) != len(states) or sum(weights) <= 0:
        raise ConfigError("one positive weight per model is needed")
    keys = list(states[0])
    for number, state in enumerate(states[1:], start=1):
        if list(state) != keys:
            raise ConfigError(f"model {number} has different parameters from model 0; not soupable")
    total = float(sum(weights))
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        first = states[0][key]
        if first.is_floating_point():
            acc = torch.zeros_like(first, dtype=torch.float64)
            for state, weight in zip(states, weights, strict=True):
                acc += state[key].to(torch.float64) * (weight / total)
            out[key] = acc.to(first.dtype)
        else:
            if any(not torch.equal(state[key], first) for state in states[1:]):
                raise ConfigError(f"non-float tensor {key!r} differs between models; not soupable")
            out[key] = first.clone()
    return out


def make_soup(models: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
    """A copy of the first model carrying the averaged weights of all of them."""
    soup = copy.deepcopy(models[0])
    soup.load_state_dict(average_state_dicts([m.state_dict() for m in models], weights))
    return soup


@dataclass
class SoupDecision:
    chosen: str
    scores: dict[str, float]
    soup_score: float | None
    best_single: str
    ingredients: list[str] = field(default_factory=list)

    @property
    def kept_soup(self) -> bool:
        return self.chosen == "soup"


def select_soup(
    candidates: Mapping[str, Any], score: Callable[[Any], float], *, method: str = "uniform"
) -> tuple[Any, SoupDecision]:
    """Score every candidate and a soup of them; keep the soup if it is >= the best one.

    ``"uniform"`` averages all candidates. ``"greedy"`` (Wortsman et al.'s greedy soup) starts
    from the best candidate and adds the others, best first, each only if the soup's score does
    not drop, so early checkpoints that would drag a uniform soup down stay out. ``score`` is a
    dev metric, higher is better. With one candidate there is nothing to average.
    """
    if not candidates:
        raise ConfigError("no checkpoints to choose from")
    if method not in ("uniform", "greedy"):
        raise ConfigError(f"soup method {method!r} is unknown; use 'uniform' or 'greedy'")
    scores = {name: float(score(model)) for name, model in candidates.items()}
    order = sorted(scores, key=lambda name: -scores[name])
    best = order[0]
    if len(candidates) == 1:
        return candidates[best], SoupDecision(best, scores, None, best, [best])
    if method == "uniform":
        ingredients = order
        soup = make_soup([candidates[name] for name in ingredients])
        soup_score = float(score(soup))
    else:
        ingredients, soup, soup_score = [best], candidates[best], scores[best]
        for name in order[1:]:
            trial = make_soup([candidates[n] for n in [*ingredients, name]])
            trial_score = float(score(trial))
            if trial_score >= soup_score:
                ingredients, soup, soup_score = [*ingredients, name], trial, trial_score
        if len(ingredients) == 1:
            return candidates[best], SoupDecision(best, scores, None, best, ingredients)
    if soup_score >= scores[best]:
        return soup, SoupDecision("soup", scores, soup_score, best, ingredients)
    return candidates[best], SoupDecision(best, scores, soup_score, best, ingredients)

"""Model prices: USD per token for input and output, shipped with the package.

The table (``model_prices.json``) is generated from LiteLLM's price map by
``scripts/update_model_prices.py`` and never fetched at run time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True, slots=True)
class ModelPrice:
    provider: str
    input: float
    output: float


# A trailing release date (gpt-4o-2024-08-06, claude-3-5-sonnet-20241022) or version tag.
_DATED = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-v\d+(:\d+)?)$")


class PriceTable:
    """Looks up a model's price by name, tolerant of provider prefixes and dated names."""

    def __init__(self, models: dict[str, ModelPrice]) -> None:
        self._models = models
        self._lower = {name.lower(): price for name, price in models.items()}
        self._lookup = lru_cache(maxsize=4096)(self._find)

    @classmethod
    def bundled(cls) -> PriceTable:
        raw = json.loads(
            resources.files("apiary.dataplane.enrich").joinpath("model_prices.json").read_text()
        )
        return cls(
            {
                name: ModelPrice(str(e["provider"]), float(e["input"]), float(e["output"]))
                for name, e in raw["models"].items()
            }
        )

    def __len__(self) -> int:
        return len(self._models)

    def price(self, model: str, provider: str = "") -> ModelPrice | None:
        if not model:
            return None
        return self._lookup(model, provider)

    def cost(
        self, model: str, provider: str, prompt_tokens: int, completion_tokens: int
    ) -> float | None:
        """USD for one call, or ``None`` when the model is not in the table."""
        price = self.price(model, provider)
        if price is None:
            return None
        return prompt_tokens * price.input + completion_tokens * price.output

    def _find(self, model: str, provider: str) -> ModelPrice | None:
        name = model.strip().lower()
        candidates = [name]
        if provider:
            candidates.append(f"{provider.lower()}/{name}")
        if "/" in name:
            candidates.append(name.rsplit("/", 1)[1])
        undated = [_DATED.sub("", c) for c in candidates]
        for candidate in candidates + undated:
            found = self._lower.get(candidate)
            if found is not None:
                return found
        return None

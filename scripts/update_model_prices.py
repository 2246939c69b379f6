"""Regenerate apiary/dataplane/enrich/model_prices.json from LiteLLM's bundled price map.

Run: .venv/bin/python scripts/update_model_prices.py
Keeps, for every model priced per token, its provider and USD per input/output token.
The file is shipped in the package so that cost enrichment never needs the network.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

MODES = {"chat", "completion", "embedding", "responses"}


def main() -> None:
    # Locate the file without importing litellm, whose import fetches prices from the network.
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("litellm is not installed")
    source = Path(next(iter(spec.submodule_search_locations)))
    source = source / "model_prices_and_context_window_backup.json"
    table = json.loads(source.read_text())
    prices: dict[str, dict[str, object]] = {}
    for name, entry in sorted(table.items()):
        if not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        inp, out = entry.get("input_cost_per_token"), entry.get("output_cost_per_token", 0.0)
        if not isinstance(inp, (int, float)):
            continue
        prices[name] = {
            "provider": entry.get("litellm_provider", ""),
            "input": float(inp),
            "output": float(out or 0.0),
        }
    package = Path(__file__).resolve().parents[1] / "apiary"
    target = package / "dataplane" / "enrich" / "model_prices.json"
    target.write_text(json.dumps({"source": "litellm model_prices_and_context_window",
                                  "models": prices}, separators=(",", ":")))
    print(f"wrote {len(prices)} models to {target}")


if __name__ == "__main__":
    main()

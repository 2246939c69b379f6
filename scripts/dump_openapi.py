"""Write both planes' OpenAPI documents for the web UI's generated types (``make ui``).

``python scripts/dump_openapi.py DIR`` writes ``DIR/control.json`` (the control plane) and
``DIR/data.json`` (the data plane), exactly what their ``/openapi.json`` serve; the apps
are built without a database or servers (a spec needs neither).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from apiary.control.api import create_control_plane_app
from apiary.dataplane.app import create_app


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: dump_openapi.py DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    specs = {
        "control.json": create_control_plane_app(None).openapi(),  # type: ignore[arg-type]
        "data.json": create_app(None).openapi(),  # type: ignore[arg-type]
    }
    for name, spec in specs.items():
        (out / name).write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

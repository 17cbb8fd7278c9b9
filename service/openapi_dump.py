"""Write the served OpenAPI schema to openapi.yaml: ``python -m service.openapi_dump [PATH]``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from facecloak.settings import Settings

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


def schema() -> dict[str, Any]:
    """The schema the app serves (independent of settings)."""
    from service.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp), broker_url=None, storage_url=None))
        return app.openapi()


def render(spec: dict[str, Any]) -> str:
    """Stable YAML text (keys in schema order)."""
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> int:
    """Write the file and say where."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(render(schema()))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

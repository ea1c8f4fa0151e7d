"""Render the README's screenshots from the demo at 80x24 into screenshots/*.svg."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui.demo.run import make_demo_app  # noqa: E402
from tui.demo.scenes import BASE_PORT, SCREENSHOTS, SIZE  # noqa: E402


async def export(name: str, scene, folder: Path) -> Path:
    app = make_demo_app(folder, BASE_PORT)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await scene(pilot)
            path = app.save_screenshot(f"{name}.svg", str(ROOT / "screenshots"))
    finally:
        app.demo.close()
    return Path(path)


def main() -> None:
    for name, scene in SCREENSHOTS.items():
        with tempfile.TemporaryDirectory() as folder:
            print(asyncio.run(export(name, scene, Path(folder))).relative_to(ROOT))


if __name__ == "__main__":
    main()

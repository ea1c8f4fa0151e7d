"""What each screen shows, from the demo at 80x24: the same scenes as screenshots/."""

from __future__ import annotations

import pytest

from tui.demo.run import make_demo_app
from tui.demo.scenes import BASE_PORT, SCENES, SIZE


@pytest.fixture
def demo_app(tmp_path):
    app = make_demo_app(tmp_path, BASE_PORT)
    yield app
    app.demo.close()


@pytest.mark.parametrize("scene", list(SCENES))
def test_screen(snap_compare, demo_app, scene):
    assert snap_compare(demo_app, terminal_size=SIZE, run_before=SCENES[scene])

"""The real code location on the tiny configuration, for `dagster dev` in tests: the folder and
the demo slice come from FLYWHEEL_UI_FOLDER and FLYWHEEL_UI_DEMO."""

import os
from pathlib import Path

from pipeline.definitions import build_defs, default_resources
from tests.assets.tiny import tiny_resources

defs = build_defs({**default_resources(),
                   **tiny_resources(Path(os.environ["FLYWHEEL_UI_FOLDER"]), Path(os.environ["FLYWHEEL_UI_DEMO"]))})

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
BEAUTY = Path(os.environ.get("EARN_BEAUTY_DIR", REPO.parent / "shared" / "data" / "amazon-beauty"))


@pytest.fixture(scope="session")
def beauty_dir():
    if not (BEAUTY / "sequential_train.txt").is_file():
        pytest.skip(f"Beauty data not found at {BEAUTY} (set EARN_BEAUTY_DIR)")
    return BEAUTY

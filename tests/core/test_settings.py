import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_settings(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )


def test_production_refuses_the_embedded_development_keys():
    result = _load_settings(DEBUG="false")
    assert result.returncode != 0
    assert "embedded development key" in result.stderr


def test_production_starts_with_real_keys():
    result = _load_settings(
        DEBUG="false", SECRET_KEY="x" * 50, FIELD_ENCRYPTION_KEY="q1cXh8e0W0mFQ8rXb3a9Yl5wKxJ2p4Zt6VuN7sR8dE0="
    )
    assert result.returncode == 0, result.stderr

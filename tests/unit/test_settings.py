"""Secrets come from the environment only: one written in nurture.yaml is refused, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.errors import ConfigError
from nurture.settings import load_settings


@pytest.mark.parametrize("key", ["secret_key", "smtp_password", "imap_password", "mailgun_signing_key",
                                 "webhook_secret", "dkim_key"])
def test_a_secret_in_the_file_is_refused(tmp_path: Path, key: str) -> None:
    config = tmp_path / "nurture.yaml"
    config.write_text(f"{key}: written-down\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"'{key}' is a secret; set it in the environment"):
        load_settings({"NURTURE_SECRET_KEY": "k"}, config)

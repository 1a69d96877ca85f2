"""Service configuration: Bento arguments vs environment, and errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_bento_arguments_and_environment_merge() -> None:
    """Bento args give domain/model/feature store; DACDR_MODEL_TAG and DACDR_FEAST_REPO override them."""
    from bento.config import resolve_config

    args = {"domain": "fashion_feed", "model_tag": "dacdr-fashion_feed:v1", "feast_repo": "/built/feast"}
    cfg = resolve_config(args, {})
    assert (cfg.domain, cfg.model_tag, cfg.feast_workdir) == (
        "fashion_feed",
        "dacdr-fashion_feed:v1",
        Path("/built/feast"),
    )
    env = {"DACDR_MODEL_TAG": "dacdr-fashion_feed:v2", "DACDR_FEAST_REPO": "/run/feast", "DACDR_DOMAIN": "x"}
    cfg = resolve_config(args, env)
    assert (cfg.domain, cfg.model_tag, cfg.feast_workdir) == (
        "fashion_feed",
        "dacdr-fashion_feed:v2",
        Path("/run/feast"),
    )
    cfg = resolve_config({}, {"DACDR_DOMAIN": "deals_page", "DACDR_FEAST_REPO": "/f"})
    assert cfg.domain == "deals_page" and cfg.model_tag is None


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ({}, {"DACDR_FEAST_REPO": "/f"}, "DACDR_DOMAIN"),
        ({"domain": "fashion_feed"}, {}, "DACDR_FEAST_REPO"),
        ({"domain": "Bad Domain!"}, {"DACDR_FEAST_REPO": "/f"}, "invalid domain name"),
    ],
)
def test_missing_or_bad_configuration_is_named(args: dict, env: dict, message: str) -> None:
    """A service that cannot know its domain or store refuses to start, saying which setting."""
    from bento.config import resolve_config

    with pytest.raises(ValueError, match=message):
        resolve_config(args, env)


@pytest.mark.parametrize(("raw", "message"), [("ten", "is not an integer"), ("0", "must be >= 1")])
def test_bad_candidate_cap_is_named(raw: str, message: str) -> None:
    """DACDR_MAX_CANDIDATES must be a positive integer; the error names the variable."""
    from bento.config import ENV_MAX_CANDIDATES, read_positive_int

    with pytest.raises(ValueError, match=f"{ENV_MAX_CANDIDATES}.*{message}"):
        read_positive_int({ENV_MAX_CANDIDATES: raw}, ENV_MAX_CANDIDATES, 1000)
    assert read_positive_int({ENV_MAX_CANDIDATES: "25"}, ENV_MAX_CANDIDATES, 1000) == 25

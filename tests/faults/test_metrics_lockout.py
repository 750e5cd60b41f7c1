"""Fault suite, exposure (issue 32 item 8): ``/metrics`` needs a token (the metrics token or the
admin token; off without one), and bad admin tokens lock out only the client address that sent
them, never a request carrying the right token. Through the real app (FastAPI TestClient)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from test_exposure import TOKEN, _services
from recommender.serving.app import create_app

METRICS = "scrape-" + "m" * 26
ENV_KEYS = ("ECAUG_ADMIN_TOKEN", "ECAUG_ADMIN_TOKEN_FILE", "ECAUG_METRICS_TOKEN", "ECAUG_METRICS_TOKEN_FILE", "ECAUG_DOCS")


@pytest.fixture()
def clean_env(monkeypatch):
    for k in ENV_KEYS:
        monkeypatch.delenv(k, raising=False)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_metrics_is_off_without_a_token(clean_env):
    # old code: 200 with every counter for anyone
    with TestClient(create_app(_services())) as client:
        assert client.get("/metrics").status_code == 404


def test_metrics_needs_the_metrics_or_the_admin_token(clean_env, monkeypatch):
    monkeypatch.setenv("ECAUG_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("ECAUG_METRICS_TOKEN", METRICS)
    with TestClient(create_app(_services())) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=_bearer("wrong")).status_code == 403
        r = client.get("/metrics", headers=_bearer(METRICS))
        assert r.status_code == 200 and "ecaug_http_requests_total" in r.text
        assert client.get("/metrics", headers=_bearer(TOKEN)).status_code == 200
        # the metrics token is for scraping only: it does not reload models
        assert client.post("/admin/reload", headers=_bearer(METRICS)).status_code == 403


def test_metrics_with_only_an_admin_token(clean_env, monkeypatch):
    monkeypatch.setenv("ECAUG_ADMIN_TOKEN", TOKEN)
    with TestClient(create_app(_services())) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=_bearer(TOKEN)).status_code == 200


def test_bad_tokens_lock_out_their_sender_only(clean_env, monkeypatch):
    """Old code: after 10 bad tokens (one window) the real token got 429 too, from anyone."""
    monkeypatch.setenv("ECAUG_ADMIN_TOKEN", TOKEN)
    app = create_app(_services(), admin_rate=10)
    with TestClient(app, client=("10.0.0.66", 40000)) as attacker:
        codes = [attacker.post("/admin/reload", headers=_bearer(f"guess{i}")).status_code for i in range(13)]
        assert codes[:10] == [403] * 10 and codes[10:] == [429] * 3
        assert attacker.get("/metrics", headers=_bearer("guess")).status_code == 429  # same client, same lockout
        operator = TestClient(app, client=("10.0.0.7", 40001))
        assert operator.post("/admin/reload", headers=_bearer("typo")).status_code == 403  # not locked out
        assert operator.post("/admin/reload", headers=_bearer(TOKEN)).status_code == 200
        # the right token is never refused for bad guesses, even from the locked-out address
        # (a proxy in front puts every client behind one address)
        assert attacker.post("/admin/reload", headers=_bearer(TOKEN)).status_code == 200
        assert attacker.get("/metrics", headers=_bearer(TOKEN)).status_code == 200


def test_right_token_requests_are_still_rate_limited(clean_env, monkeypatch):
    monkeypatch.setenv("ECAUG_ADMIN_TOKEN", TOKEN)
    with TestClient(create_app(_services(), admin_rate=3)) as client:
        codes = [client.post("/admin/reload", headers=_bearer(TOKEN)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        # scraping with the right token is not an admin action: not limited
        assert all(client.get("/metrics", headers=_bearer(TOKEN)).status_code == 200 for _ in range(5))

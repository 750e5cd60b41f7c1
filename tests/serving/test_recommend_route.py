"""``/recommend`` in its four variants (ecaug's int ids or a shop's keys; on the event loop or in
FastAPI's thread pool), all built by one route factory (``app._recommend_route``): each keeps its
OpenAPI summary and parameter schema, its 422s (a shop's key: the parser's reason, never the
input; the ``MAX_KEY_CHARS`` limit) and where it runs."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recommender.serving.app import MAX_ID, Services, create_app
from recommender.serving.components import ItemCatalog, Popularity, SeenItems, UserFeatures
from recommender.serving.metrics import ServingMetrics
from recommender.serving.model_bundle import ModelHolder
from recommender.serving.shop import MAX_KEY_CHARS, key_parser


class LoopProbe:
    """A feature reader that notes whether it was called on a running event loop."""

    def __init__(self) -> None:
        self.on_loop: list[bool] = []

    def read(self, user_ids):
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:  # a thread-pool worker has no running loop
            self.on_loop.append(False)
        return [UserFeatures(u, False, {}) for u in user_ids]

    def ping(self) -> bool:
        return True


def _client(shop_dtype: str | None, inline: bool) -> tuple[TestClient, LoopProbe]:
    inter = pd.DataFrame({"user_id": [1, 2, 2], "item_id": [3, 4, 4]})
    probe = LoopProbe()
    services = Services(probe, ModelHolder(lambda: None), SeenItems.from_interactions(inter),
                        Popularity.from_interactions(inter), ItemCatalog(pd.DataFrame({"item_id": [3, 4]})),
                        ServingMetrics(), max_k=50, user_key=key_parser(shop_dtype) if shop_dtype else None)
    app = create_app(services, inline=inline, docs=True, admin_token=None, metrics_token=None, state_dir=None)
    return TestClient(app), probe  # no lifespan: no model, the answers are the popularity fallback


@pytest.mark.parametrize("inline", [True, False])
def test_int_ids(inline: bool):
    client, probe = _client(None, inline)
    op = client.get("/openapi.json").json()["paths"]["/recommend"]["get"]
    assert op["summary"] == "Top-k items for a user" and op["operationId"] == "recommend_route_recommend_get"
    params = {p["name"]: p for p in op["parameters"]}
    assert params["user_id"]["required"] and params["user_id"]["schema"]["type"] == "integer"
    assert (params["user_id"]["schema"]["minimum"], params["user_id"]["schema"]["maximum"]) == (1, MAX_ID)
    assert params["k"]["schema"]["default"] == 10 and params["k"]["schema"]["minimum"] == 1

    r = client.get("/recommend", params={"user_id": "7", "k": 2})
    assert r.status_code == 200 and r.json()["user_id"] == 7 and r.json()["fallback"] == "unknown_user"
    assert [it["item_id"] for it in r.json()["items"]] == [4, 3]
    assert probe.on_loop == [inline]  # the event loop only when inline
    for bad, why in (("abc", "int_parsing"), ("0", "greater_than_equal"), (str(MAX_ID + 1), "less_than_equal")):
        r = client.get("/recommend", params={"user_id": bad})
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == why, (bad, r.json())
    assert client.get("/recommend", params={"user_id": 1, "k": 51}).json()["detail"] == "k must be between 1 and 50, got 51"


@pytest.mark.parametrize("inline", [True, False])
def test_shop_keys(inline: bool):
    client, probe = _client("int64", inline)
    op = client.get("/openapi.json").json()["paths"]["/recommend"]["get"]
    assert op["summary"] == "Top-k items for a shop's user key" and op["operationId"] == "recommend_route_recommend_get"
    key = {p["name"]: p for p in op["parameters"]}["user_id"]["schema"]
    assert key["type"] == "string" and (key["minLength"], key["maxLength"]) == (1, MAX_KEY_CHARS)

    r = client.get("/recommend", params={"user_id": " -42", "k": 1})
    assert r.status_code == 200 and r.json()["user_id"] == -42  # parsed into the shop's type
    assert probe.on_loop == [inline]
    r = client.get("/recommend", params={"user_id": "no-such-number"})
    assert r.status_code == 422 and r.json() == {"detail": "user_id must be an Int64 key (an integer)"}
    long = client.get("/recommend", params={"user_id": "9" * (MAX_KEY_CHARS + 1)})
    assert long.status_code == 422 and long.json()["detail"][0]["type"] == "string_too_long"
    assert "9" * 65 not in long.text  # the input is not echoed
    assert client.get("/recommend", params={"user_id": ""}).status_code == 422

    strings, _ = _client("string", inline)
    r = strings.get("/recommend", params={"user_id": "x" * MAX_KEY_CHARS})
    assert r.status_code == 200 and r.json()["user_id"] == "x" * MAX_KEY_CHARS

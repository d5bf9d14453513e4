"""The API skeleton: health, one error shape, pagination, limits, headers, schema, docs."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from node import __version__
from node.api.keys import NODE

Client = TestClient[web.Request, web.Application]


async def test_health_without_auth(client: Client) -> None:
    resp = await client.get("/api/health/")
    assert resp.status == 200
    body = await resp.json()
    ctx = client.app[NODE]  # type: ignore[index]
    assert body["status"] == "ok"
    assert body["node_id"] == ctx.node_id
    assert body["center"] == "DEMO"
    assert body["version"] == __version__
    assert body["uptime_seconds"] >= 0


async def test_unknown_path_and_method_share_the_error_shape(client: Client) -> None:
    resp = await client.get("/api/nothing-here/")
    assert resp.status == 404
    assert await resp.json() == {"detail": "Not found.", "code": "not_found"}
    resp = await client.delete("/api/health/")
    assert resp.status == 405
    assert (await resp.json())["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


async def test_unexpected_error_is_a_plain_500(client: Client, caplog: Any) -> None:
    resp = await client.get("/api/probe/boom/")
    assert resp.status == 500
    text = await resp.text()
    assert "secret" not in text and "Traceback" not in text
    assert await resp.json() == {"detail": "Internal server error.", "code": "server_error"}
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)


async def _count(client: Client) -> int:
    resp = await client.get("/api/probe/")
    return int((await resp.json())["count"])


async def test_valid_write_then_bad_inputs_change_nothing(client: Client) -> None:
    resp = await client.post("/api/probe/", json={"roll_no": "001", "name": "Asha", "age": 17})
    assert resp.status == 201
    assert await resp.json() == {"roll_no": "001", "name": "Asha", "age": 17}
    store = client.app[NODE].store  # type: ignore[index]
    deltas = store.stats()["log_entries"]

    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"json": {"roll_no": "002", "name": "B", "age": 17, "admin": True}}, 400, "admin"),
        ({"json": {"roll_no": "002", "name": "B", "age": "old"}}, 400, "age"),
        ({"json": {"roll_no": "002", "name": "B"}}, 400, "age"),
        ({"json": ["not", "an", "object"]}, 400, "detail"),
        ({"data": b"{bad json", "headers": {"Content-Type": "application/json"}}, 400, "detail"),
        ({"data": b"roll_no=1", "headers": {"Content-Type": "text/plain"}}, 415, "detail"),
        ({"data": b"x" * 10_000, "headers": {"Content-Type": "application/json"}}, 413, "detail"),
    ]
    for kwargs, status, field in bad:
        resp = await client.post("/api/probe/", **kwargs)
        body = await resp.json()
        assert resp.status == status, (kwargs, body)
        assert field in body, body
        assert "code" in body
    assert body["code"] == "too_large"
    unknown = await (await client.post("/api/probe/", json={
        "roll_no": "2", "name": "B", "age": 17, "admin": True})).json()
    assert unknown["admin"] == ["Unknown field."]
    assert store.stats()["log_entries"] == deltas
    assert await _count(client) == 1


async def test_pagination_shape_and_limits(client: Client) -> None:
    for i in range(7):
        resp = await client.post("/api/probe/", json={"roll_no": f"{i}", "name": f"N{i}",
                                                      "age": 20})
        assert resp.status == 201
    page1 = await (await client.get("/api/probe/")).json()
    assert page1["count"] == 7
    assert len(page1["results"]) == 3
    assert page1["previous"] is None
    assert page1["next"].endswith("page=2")
    page3 = await (await client.get("/api/probe/?page=3")).json()
    assert [r["roll_no"] for r in page3["results"]] == ["6"]
    assert page3["next"] is None and page3["previous"].endswith("page=2")
    big = await (await client.get("/api/probe/?page_size=5")).json()
    assert len(big["results"]) == 5
    resp = await client.get("/api/probe/?page_size=6")
    assert resp.status == 400
    assert "page_size" in await resp.json()
    resp = await client.get("/api/probe/?page=9")
    assert resp.status == 404
    assert (await resp.json())["detail"] == "Invalid page."
    resp = await client.get("/api/probe/?page=zero")
    assert resp.status == 400
    assert "page" in await resp.json()


async def test_security_headers(client: Client) -> None:
    resp = await client.get("/api/health/")
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    page = await client.get("/")
    assert page.status == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "Cache-Control" not in page.headers


async def test_openapi_schema_describes_registered_routes(client: Client) -> None:
    schema = await (await client.get("/api/schema/")).json()
    assert schema["openapi"] == "3.1.0"
    assert schema["info"]["version"] == __version__
    health = schema["paths"]["/api/health/"]["get"]
    assert health["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Health"}
    assert "security" not in health
    post = schema["paths"]["/api/probe/"]["post"]
    body_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    probe_in = schema["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert set(probe_in["required"]) == {"roll_no", "name", "age"}
    assert probe_in["additionalProperties"] is False
    assert "400" in post["responses"] and "413" in post["responses"]
    listing = schema["paths"]["/api/probe/"]["get"]
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(page["required"]) == {"count", "next", "previous", "results"}
    assert {p["name"] for p in listing["parameters"]} >= {"page", "page_size"}
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail", "code"]


async def test_swagger_ui_is_served_locally(client: Client) -> None:
    page = await client.get("/api/docs/")
    assert page.status == 200
    html = await page.text()
    assert "swagger-ui-bundle.js" in html
    assert "http" not in html.replace("http-equiv", "")  # no CDN, only local paths
    js = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert js.status == 200
    assert len(await js.read()) > 100_000
    init = await (await client.get("/api/docs/init.js")).text()
    assert '"/api/schema/"' in init

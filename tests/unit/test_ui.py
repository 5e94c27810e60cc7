"""The back-office page's serving: where it is on, its headers, and its files' hygiene.

What the page does in a browser is tests/browser's; here only the server's side.
"""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser

import pytest
from starlette.testclient import TestClient

from query_api.app import create_app
from query_api.errors import ConfigError
from query_api.settings import Settings
from query_api.ui import CONTENT_SECURITY_POLICY, FILES, _content
from tests.helpers import ROOT

pytestmark = pytest.mark.unit


def client(**changes: object) -> TestClient:
    # No lifespan (no `with`): serving static files touches no database.
    return TestClient(create_app(Settings(**changes)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "served"),
    [
        ({}, True),  # development: on by default
        ({"ui": False}, False),
        ({"environment": "production"}, False),  # production: off by default
        ({"environment": "production", "ui": True}, True),
    ],
)
def test_the_page_is_served_where_the_settings_say(changes: dict[str, object],
                                                   served: bool) -> None:
    response = client(**changes).get("/")
    assert response.status_code == (200 if served else 404)
    if served:
        assert response.headers["content-type"].startswith("text/html")
        assert '<script src="/ui/app.js" defer></script>' in response.text


def test_every_file_carries_the_headers() -> None:
    api = client()
    for path, (_, media_type) in FILES.items():
        response = api.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == media_type
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY
    assert api.get("/ui/other.js").status_code == 404


def test_with_tokens_the_files_are_open_and_the_data_is_not() -> None:
    api = client(tokens=("t-1",))
    assert api.get("/").status_code == 200
    assert api.get("/ui/app.js").status_code == 200
    assert api.post("/graphql", json={"query": "{ projectionStatus { generation } }"}
                    ).status_code == 401


def test_query_api_ui_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).serves_ui is True
    assert Settings.from_env({"QUERY_API_UI": ""}).ui is None
    assert Settings.from_env({"QUERY_API_ENV": "production"}).serves_ui is False
    assert Settings.from_env({"QUERY_API_ENV": "production", "QUERY_API_UI": "1"}).serves_ui
    assert Settings.from_env({"QUERY_API_UI": "0"}).serves_ui is False
    with pytest.raises(ConfigError, match="QUERY_API_UI"):
        Settings.from_env({"QUERY_API_UI": "maybe"})


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("an inline <script>")
        if tag == "style":
            self.found.append("a <style> element")
        self.found += [f"attribute {n} on <{tag}>" for n in names
                       if n == "style" or n.startswith("on")]


def test_the_files_hold_nothing_the_policy_would_block() -> None:
    parser = _Inline()
    parser.feed(_content("index.html").decode())
    assert parser.found == []
    script = _content("app.js").decode()
    assert "innerHTML" not in script  # data goes in as text only
    assert not re.search(r"setAttribute\(\s*['\"]style", script)
    assert not re.search(r"\beval\(|new Function\(", script)
    assert "http://" not in script.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in script


def test_the_files_are_package_data() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["query_api"]
    assert "ui/static/*" in declared
    for name, _ in FILES.values():
        assert (ROOT / "query_api" / "ui" / "static" / name).is_file()

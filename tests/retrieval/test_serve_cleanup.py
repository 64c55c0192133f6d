"""The duplicates tab's API: groups with each copy's facts, the histogram, and the guarded apply."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from retrieval import cleanup
from retrieval import serve as server
from retrieval.index import Index
from tests.retrieval.conftest import thumbnail_model

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def index(duplicates_dir: Path, tmp_path: Path) -> Index:
    """The planted near-duplicates plus an exact copy of ``b/photo07.png``: 15 images, 3 groups."""
    shutil.copy(duplicates_dir / "b/photo07.png", duplicates_dir / "copies/photo07-copy.png")
    return Index.build(thumbnail_model(), duplicates_dir, tmp_path / "index", num_workers=0)


@pytest.fixture
def quarantine(tmp_path: Path) -> Path:
    return tmp_path / "quarantine"


@pytest.fixture
def client(index: Index, quarantine: Path):
    return server.create_app(index, "127.0.0.1", 8765, reload_interval=0, move_to=quarantine).test_client()


def page_token(client) -> str:
    page = client.get("/", base_url=BASE)
    assert page.headers["Cache-Control"] == "no-store"
    (token,) = re.findall(r'<meta name="page-token" content="([^"]+)">', page.get_data(as_text=True))
    return token


def test_groups_carry_each_copys_facts_and_the_rules_action(client, index: Index, duplicates_dir: Path) -> None:
    data = client.get("/api/duplicates", base_url=BASE).get_json()
    assert data["keep"] == "largest" and data["keep_rules"] == list(cleanup.KEEP_RULES)
    assert data["write"] == index.manifest["write"]["id"] and data["quarantine"].endswith("quarantine")
    (exact,) = data["exact"]
    assert exact["group"] == 1 and exact["kind"] == "exact"
    assert [(image["path"], image["action"]) for image in exact["images"]] == [
        ("b/photo07.png", "keep"), ("copies/photo07-copy.png", "move"),
    ]
    assert [group["group"] for group in data["near"]] == [2, 3]
    small = next(image for group in data["near"] for image in group["images"] if image["path"].endswith("small.png"))
    assert (small["width"], small["height"], small["action"]) == (40, 40, "move")
    assert small["file_size"] == (duplicates_dir / small["path"]).stat().st_size and small["modified"]
    assert small["thumbnail"] == f"/thumbnails/{small['id']}" and small["folder"] == "copies"
    newest = client.get("/api/duplicates?keep=oldest", base_url=BASE).get_json()
    assert newest["keep"] == "oldest"
    assert [image["action"] for image in newest["exact"][0]["images"]] == ["keep", "move"]  # written first
    refused = client.get("/api/duplicates?keep=biggest", base_url=BASE)
    assert refused.status_code == 400 and "largest, newest, oldest, shortest-path" in refused.get_json()["error"]


def test_histogram_counts_every_image_once(client) -> None:
    data = client.get("/api/duplicates/histogram", base_url=BASE).get_json()
    assert data["images"] == sum(data["counts"]) == 15 and data["edges"][-1] == 1.0
    assert len(data["edges"]) == len(data["counts"]) + 1 and data["bin_width"] == 0.01


def apply_body(client) -> dict:
    """What the page sends for every group, as the rule marked it: ids only."""
    data = client.get("/api/duplicates", base_url=BASE).get_json()
    groups = [
        {"keep": next(i["id"] for i in group["images"] if i["action"] == "keep"),
         "move": [i["id"] for i in group["images"] if i["action"] == "move"]}
        for kind in ("exact", "near") for group in data[kind]
    ]
    return {"threshold": data["threshold"], "write": data["write"], "groups": groups}


def post(client, body, token: str | None, origin: str | None = None):
    headers = {} if token is None else {server.TOKEN_HEADER: token}
    if origin is not None:
        headers["Origin"] = origin
    return client.post("/api/duplicates/apply", base_url=BASE, json=body, headers=headers)


def test_apply_is_refused_without_the_token_or_from_another_origin(client, quarantine: Path, index: Index) -> None:
    body, token = apply_body(client), page_token(client)
    for refused in (post(client, body, None), post(client, body, "not-the-token"), post(client, body, "")):
        assert refused.status_code == 403 and "needs the token of the page" in refused.get_json()["error"]
    foreign = post(client, body, token, origin="http://evil.example")
    assert foreign.status_code == 403 and "requests from http://evil.example are refused" in foreign.get_json()["error"]
    assert not quarantine.exists() and len(Index.load(index.directory, model=index.model)) == 15
    other = server.create_app(index, "127.0.0.1", 8765, move_to=quarantine).test_client()
    assert page_token(other) != token  # each server has its own
    assert post(other, body, token).status_code == 403


def test_apply_takes_ids_only_and_refuses_a_stale_view(client, index: Index, duplicates_dir: Path) -> None:
    body, token = apply_body(client), page_token(client)
    for bad, message in [
        ({**body, "groups": [{"keep": "b/photo07.png", "move": ["../../etc/passwd"]}]},
         "keep must be an image id"),
        ({**body, "groups": [{"keep": body["groups"][0]["keep"], "move": [str(duplicates_dir / "a/photo01.png")]}]},
         "move must be an image id"),
        ({**body, "groups": [{"keep": body["groups"][0]["keep"], "move": [body["groups"][1]["move"][0]]}]},
         "is not another copy in the group"),
        ({**body, "threshold": 2}, "threshold is a cosine similarity"),
        ({"groups": "all"}, "send JSON"),
        ({**body, "groups": [{"keep": 1, "move": 2}]}, "each group must be {keep: id, move: [id, ...]}"),
    ]:
        response = post(client, bad, token)
        assert response.status_code == 400 and message in response.get_json()["error"], response.get_json()
    stale = post(client, {**body, "write": "an-older-write"}, token)
    assert stale.status_code == 409 and "reload them" in stale.get_json()["error"]
    assert len(Index.load(index.directory, model=index.model)) == 15


def test_apply_moves_the_copies_and_the_page_sees_the_result(client, index: Index, quarantine: Path) -> None:
    body = apply_body(client)
    body["groups"] = body["groups"][:2]  # the third group is skipped
    response = post(client, body, page_token(client), origin="http://127.0.0.1:8765")
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert (result["moved"], result["groups"], result["images"]) == (2, 2, 13)
    assert result["undo"] == f"dim-search undo {index.directory}"
    assert sorted(path.relative_to(quarantine).as_posix() for path in quarantine.rglob("*.*")) == [
        "copies/photo00-small.png", "copies/photo07-copy.png",
    ]
    assert client.get("/api/info", base_url=BASE).get_json()["images"] == 13
    left = client.get("/api/duplicates", base_url=BASE).get_json()
    assert left["write"] == result["write"] and [len(left["exact"]), len(left["near"])] == [0, 1]
    again = post(client, body, page_token(client))  # the same view, now stale
    assert again.status_code == 409
    cleanup.undo(Index.load(index.directory, model=index.model))
    assert client.get("/api/info", base_url=BASE).get_json()["images"] == 15


def test_without_a_quarantine_folder_the_page_reviews_but_moves_nothing(index: Index, duplicates_dir: Path) -> None:
    client = server.create_app(index, "127.0.0.1", 8765).test_client()
    assert client.get("/api/duplicates", base_url=BASE).get_json()["quarantine"] is None
    response = post(client, apply_body(client), page_token(client))
    assert response.status_code == 409 and "--move-to DIR" in response.get_json()["error"]
    with pytest.raises(ValueError, match="would index the moved copies again"):
        server.create_app(index, "127.0.0.1", 8765, move_to=duplicates_dir / "quarantine")

"""``dim-search serve`` through Flask's test client: the JSON API, and every security point."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from retrieval import serve as server
from retrieval.cli import main
from retrieval.index import Index
from tests.retrieval.conftest import PLANTED_DUPLICATES, thumbnail_model, write_images

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def index(duplicates_dir: Path, tmp_path: Path) -> Index:
    return Index.build(thumbnail_model(), duplicates_dir, tmp_path / "index", num_workers=0)


@pytest.fixture
def client(index: Index):
    return server.create_app(index, "127.0.0.1", 8765, reload_interval=0).test_client()


def get(client, url: str, **kwargs):
    return client.get(url, base_url=BASE, **kwargs)


def id_of(index: Index, path: str) -> int:
    return next(record.id for record in index.records if record.path == path)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels in a few bytes (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_page_and_api_carry_the_security_headers_and_no_cors(client) -> None:
    for url in ("/", "/static/app.js", "/api/info", "/api/images"):
        response = get(client, url, headers={"Origin": "http://evil.example"})
        assert response.status_code == 200, url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert not [name for name in response.headers.keys() if name.lower().startswith("access-control-")]
    page = get(client, "/").get_data(as_text=True)
    assert '<script src="/static/app.js" defer></script>' in page and "<script>" not in page  # nothing inline


def test_info_and_paged_grid_filtered_by_folder(client) -> None:
    info = get(client, "/api/info").get_json()
    assert info["images"] == 14 and info["model"] == "test:thumbnail"
    assert info["folders"] == [{"name": "a", "count": 6}, {"name": "b", "count": 6}, {"name": "copies", "count": 2}]
    first = get(client, "/api/images?per_page=5").get_json()
    assert (first["total"], first["pages"], len(first["images"])) == (14, 3, 5)
    last = get(client, "/api/images?per_page=5&page=3").get_json()
    assert len(last["images"]) == 4
    seen = {image["id"] for page in range(1, 4) for image in get(client, f"/api/images?per_page=5&page={page}").get_json()["images"]}
    assert len(seen) == 14
    only_a = get(client, "/api/images?folder=a").get_json()
    assert only_a["total"] == 6 and {image["folder"] for image in only_a["images"]} == {"a"}
    image = only_a["images"][0]
    assert image["thumbnail"] == f"/thumbnails/{image['id']}" and image["original"] == f"/images/{image['id']}"
    response = get(client, "/api/images?per_page=5&page=9")
    assert response.status_code == 400 and response.get_json()["error"] == "page must be between 1 and 3, got 9"


def test_neighbours_of_an_image_with_scores(client, index: Index) -> None:
    original = id_of(index, "a/photo00.png")
    data = get(client, f"/api/neighbours/{original}?k=3").get_json()
    assert data["query"]["path"] == "a/photo00.png" and data["k"] == 3
    results = data["results"]
    assert [hit["rank"] for hit in results] == [0, 1, 2]
    assert results[0]["id"] == original and results[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert results[1]["path"] == PLANTED_DUPLICATES["a/photo00.png"] and results[1]["score"] >= 0.95
    assert results[1]["score"] >= results[2]["score"]
    assert get(client, "/api/neighbours/999").status_code == 404
    assert "no image with id 999" in get(client, "/api/neighbours/999").get_json()["error"]
    assert get(client, f"/api/neighbours/{original}?k=0").status_code == 400
    assert get(client, f"/api/neighbours/{original}?k={server.MAX_K + 1}").status_code == 400


def test_upload_search_in_memory_and_bad_uploads_refused(client, duplicates_dir: Path, index: Index) -> None:
    buffer = io.BytesIO()
    Image.open(duplicates_dir / "a/photo03.png").convert("RGB").save(buffer, format="JPEG", quality=80)
    before = sorted(path.name for path in index.directory.rglob("*"))
    response = client.post(
        "/api/search?k=2", base_url=BASE, data={"image": (io.BytesIO(buffer.getvalue()), "../../evil.jpg")}
    )
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["query"] == {"name": "evil.jpg"}  # the client's name is only echoed, never used as a path
    assert {hit["path"] for hit in data["results"]} == {"a/photo03.png", PLANTED_DUPLICATES["a/photo03.png"]}
    assert sorted(path.name for path in index.directory.rglob("*")) == before  # nothing written

    def post(payload: bytes, name: str = "q.png"):
        return client.post("/api/search", base_url=BASE, data={"image": (io.BytesIO(payload), name)})

    assert post(b"not an image").status_code == 400
    assert "not an image that can be read" in post(b"not an image").get_json()["error"]
    assert "upload is empty" in post(b"").get_json()["error"]
    bomb = post(png_header_only(30_000, 30_000))  # 900 megapixels in 80 bytes
    assert bomb.status_code == 413 and "too large to decode" in bomb.get_json()["error"]
    big = post(png_header_only(8_000, 8_000))  # under Pillow's own limit, over ours
    assert big.status_code == 413 and f"at most {server.MAX_UPLOAD_PIXELS:,} pixels" in big.get_json()["error"]
    huge = post(b"\0" * (server.MAX_UPLOAD_BYTES + 1))
    assert huge.status_code == 413 and "larger than 20 MB" in huge.get_json()["error"]
    missing = client.post("/api/search", base_url=BASE, data={})
    assert missing.status_code == 400 and "field 'image'" in missing.get_json()["error"]


def test_images_are_served_by_index_id_only(client, index: Index, duplicates_dir: Path) -> None:
    image_id = id_of(index, "b/photo07.png")
    response = get(client, f"/images/{image_id}")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.data == (duplicates_dir / "b/photo07.png").read_bytes()
    (duplicates_dir.parent / "secret.txt").write_text("private")
    for url in ("/images/../secret.txt", "/images/%2e%2e%2fsecret.txt", "/images/-1", "/images/photo07.png",
                "/static/../serve.py", "/images?path=../secret.txt", "/thumbnails/999"):
        response = get(client, url)
        assert response.status_code == 404, url
        assert b"private" not in response.data

    thumbnail = get(client, f"/thumbnails/{image_id}")
    assert thumbnail.status_code == 200 and thumbnail.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(thumbnail.data)) as picture:
        assert picture.format == "JPEG" and max(picture.size) <= server.THUMBNAIL_SIZE
    (cached,) = (index.directory / server.THUMBNAIL_DIR).iterdir()
    made = cached.stat()
    assert get(client, f"/thumbnails/{image_id}").data == cached.read_bytes()
    assert (cached.stat().st_ino, cached.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)  # not made again


@pytest.mark.parametrize("host", ["evil.example:8765", "evil.example", "127.0.0.1:9999", "localhost.evil.example:8765"])
def test_requests_for_another_host_are_refused(client, host: str) -> None:
    response = client.get("/api/info", base_url=BASE, headers={"Host": host})
    assert response.status_code == 403
    assert "DNS rebinding" in response.get_json()["error"] and "http://127.0.0.1:8765/" in response.get_json()["error"]


def test_loopback_names_and_same_origin_posts_are_accepted(client) -> None:
    assert client.get("/api/info", base_url="http://localhost:8765").status_code == 200
    upload = {"image": (io.BytesIO(png_header_only(2, 2)), "q.png")}
    foreign = client.post("/api/search", base_url=BASE, data=upload, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "requests from http://evil.example are refused" in foreign.get_json()["error"]


def test_allowed_hosts_for_each_kind_of_bind() -> None:
    assert server.allowed_hosts("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    assert server.allowed_hosts("192.168.1.20", 80) == {"192.168.1.20:80", "192.168.1.20"}
    wildcard = server.allowed_hosts("0.0.0.0", 8000)
    assert "127.0.0.1:8000" in wildcard and "0.0.0.0:8000" not in wildcard


def test_debug_is_off_and_failures_do_not_show_tracebacks(index: Index, monkeypatch) -> None:
    app = server.create_app(index, "127.0.0.1", 8765)
    assert app.debug is False and not app.config["DEBUG"] and not app.config["PROPAGATE_EXCEPTIONS"]

    def fail(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(Index, "neighbours_of", fail)
    response = app.test_client().get(f"/api/neighbours/{index.records[0].id}", base_url=BASE)
    assert response.status_code == 500
    assert b"secret internal detail" not in response.data and b"Traceback" not in response.data


def test_duplicates_api_returns_the_planted_groups(client, index: Index) -> None:
    data = get(client, "/api/duplicates").get_json()
    assert data["threshold"] == 0.95
    found = {frozenset(image["path"] for image in group["images"]) for group in data["near"]}
    assert found == {frozenset(pair) for pair in PLANTED_DUPLICATES.items()} and data["exact"] == []
    assert all(group["pairs"][0]["score"] >= 0.95 for group in data["near"])
    assert get(client, "/api/duplicates?threshold=1.5").status_code == 400
    assert get(client, "/api/duplicates?threshold=-1").get_json()["near"][0]["size"] == 14


def test_a_handler_answers_alone_in_a_request_context(index: Index) -> None:
    """A handler is a plain function: called in a request context of the app, it reads the app's index."""
    app = server.create_app(index, "127.0.0.1", 8765)
    with app.test_request_context("/api/images?folder=copies&per_page=1&page=2", base_url=BASE):
        assert server.server_state().live.get() is index
        answer = server.images().get_json()
    assert (answer["total"], answer["pages"], answer["page"]) == (2, 2, 2)
    copies = [record.path for record in index.records if record.path.startswith("copies/")]
    assert [image["path"] for image in answer["images"]] == copies[1:]


def test_a_newer_index_written_by_add_is_served(client, index: Index, duplicates_dir: Path) -> None:
    assert get(client, "/api/info").get_json()["images"] == 14
    write_images(duplicates_dir / "new", 2, seed=9, prefix="new")
    Index.load(index.directory, model=index.model).add(duplicates_dir, num_workers=0)
    info = get(client, "/api/info").get_json()
    assert info["images"] == 16 and {"name": "new/nested", "count": 1} in info["folders"]
    newest = max(record.id for record in Index.load(index.directory, model=index.model).records)
    assert get(client, f"/api/neighbours/{newest}?k=1").get_json()["results"][0]["id"] == newest


def test_serve_binds_loopback_by_default_and_warns_for_other_hosts(index: Index, monkeypatch) -> None:
    bound = server.start_server(index, port=0)
    try:
        assert bound.server_address[0] == "127.0.0.1" and bound.server_port > 0
    finally:
        bound.server_close()

    class Stopped:
        server_port = 8765

        def serve_forever(self) -> None:
            raise KeyboardInterrupt

        def server_close(self) -> None:
            pass

    hosts = []
    monkeypatch.setattr(server, "start_server", lambda index_, host, port, **options: hosts.append(host) or Stopped())
    for host in ("127.0.0.1", "0.0.0.0"):
        messages: list[str] = []
        server.serve(index.directory, host=host, model=index.model, echo=messages.append)
        warned = [message for message in messages if message.startswith("WARNING")]
        assert bool(warned) == (host == "0.0.0.0")
    assert hosts == ["127.0.0.1", "0.0.0.0"]
    assert "can browse and download every indexed image" in warned[0]
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    assert all(option in help_text for option in ("--port", "--host", "--open", "8765", "127.0.0.1"))

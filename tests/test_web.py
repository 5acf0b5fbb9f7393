"""``genre-id serve``: the JSON API over a real socket (uvicorn in a thread on 127.0.0.1), and the page in Chromium.

Every request goes to 127.0.0.1 only.  The browser tests drive Debian's
Chromium and chromedriver through Selenium, never downloading a browser.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

for _module in ("starlette", "uvicorn", "python_multipart"):
    pytest.importorskip(_module, reason=f"the web extra is not installed ({_module}): pip install 'genre-id[web]'")

import uvicorn  # noqa: E402

from genre_id.analysis import Analyzer  # noqa: E402
from genre_id.web.app import create_app  # noqa: E402

#: One test process runs them all (pytest-xdist): one browser, one analyzer.
pytestmark = pytest.mark.xdist_group("web")

REPO = Path(__file__).resolve().parents[1]
METAL = "metal/metal.00002.flac"  # the default model names it metal (0.81)


@pytest.fixture(scope="module")
def analyzer():
    with Analyzer.load() as a:
        yield a


@pytest.fixture(scope="module")
def metal(mini_dir) -> Path:
    path = mini_dir / METAL
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


class Server:
    """The app served by uvicorn in a background thread on 127.0.0.1 and a free port."""

    def __init__(self, app) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def service(self):
        return self.app.state.service

    def leftovers(self) -> list[str]:
        return os.listdir(self.service.folder)

    def idle(self, timeout: float = 20.0) -> bool:
        """Wait until no request is held and the temporary folder is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.service.admitted == 0 and not self.leftovers():
                return True
            time.sleep(0.05)
        return False

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 120) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def post(self, body: bytes, *, ctype: str = "application/octet-stream", query: str = "") -> tuple[int, dict, dict]:
        status, headers, data = self.request("POST", "/api/identify" + query, body, {"Content-Type": ctype})
        return status, headers, json.loads(data) if data else {}

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture(scope="module")
def make_server(analyzer):
    servers: list[Server] = []

    def make(**kwargs) -> Server:
        kwargs.setdefault("max_upload_bytes", 50 << 20)
        kwargs.setdefault("queue_size", 4)
        kwargs.setdefault("timeout_seconds", 120)
        servers.append(Server(create_app(analyzer, **kwargs)))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()
        assert not os.path.exists(s.service.folder), "the private temporary folder outlived the server"


@pytest.fixture(scope="module")
def server(make_server) -> Server:
    return make_server(workers=2)


def multipart(data: bytes, filename: str, field: str = "file") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: audio/flac\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def wav_bytes(samples: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


# ---- the API


def test_model_and_health(server, analyzer):
    status, _, body = server.request("GET", "/api/model")
    model = json.loads(body)
    assert status == 200
    assert model["labels"] == list(analyzer.labels) and model["members"] == list(analyzer.model.members)
    assert (model["name"], model["version"]) == (analyzer.model.name, analyzer.model.version)
    status, _, body = server.request("GET", "/api/health")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_page_and_its_files_are_served_without_outside_references(server):
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")):
        status, headers, body = server.request("GET", path)
        assert status == 200 and headers["content-type"].startswith(kind)
        assert b"http://" not in body and b"https://" not in body, path
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "access-control-allow-origin" not in headers  # no CORS
    status, _, body = server.request("GET", "/../../etc/passwd")
    assert status == 404 and json.loads(body) == {"error": "not found"}


@pytest.mark.slow
def test_real_clip_raw_and_multipart_equal_the_library(server, analyzer, metal):
    expected = analyzer.analyze(metal).to_dict()
    data = metal.read_bytes()
    status, _, raw = server.post(data, ctype="audio/flac")
    assert status == 200, raw
    assert raw["file"] == "upload" and {**raw, "file": expected["file"]} == expected
    body, ctype = multipart(data, "../../My Song?.flac")
    status, _, form = server.post(body, ctype=ctype)
    assert status == 200, form
    assert form["file"] == "My Song_.flac"  # the last component, sanitized: never a path
    assert {**form, "file": expected["file"]} == expected
    assert server.idle()


@pytest.mark.slow
def test_top_and_timeline_options(server, metal):
    status, _, d = server.post(metal.read_bytes(), query="?top=1&timeline=0&name=song.flac")
    assert status == 200 and d["file"] == "song.flac"
    assert "segments" not in d and [t["genre"] for t in d["top"]] == ["metal"]
    for bad in ("?top=0", "?top=99", "?top=x", "?timeline=2"):
        status, _, d = server.post(b"x", query=bad)
        assert status == 400 and "error" in d


def _cut_mp3(path: Path) -> bytes:
    import av

    x, sr = sf.read(path, dtype="float32")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("mp3", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x[None, : sr * 10], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in (*stream.encode(frame), *stream.encode(None)):
            out.mux(packet)
    data = buf.getvalue()
    return data[: len(data) * 2 // 3]


@pytest.mark.slow
def test_bad_audio_is_one_line_422(server, metal):
    sr = 22050
    cases = {
        "empty": (b"", "empty"),
        "text": (b"hello, this is not audio\n" * 40, "not a readable audio file"),
        "truncated flac": (metal.read_bytes()[:300_000], "truncated"),
        "truncated mp3": (_cut_mp3(metal), "truncated"),
        "too short": (wav_bytes(np.zeros(sr) + 0.1 * np.sin(np.arange(sr) / 5), sr), "at least"),
        "silent": (wav_bytes(np.zeros(6 * sr), sr), "silent"),
    }
    for what, (data, says) in cases.items():
        status, headers, d = server.post(data, ctype="audio/wav", query="?name=clip.wav")
        assert status == 422, (what, d)
        assert set(d) == {"error"} and "\n" not in d["error"] and says in d["error"], (what, d)
        assert d["error"].startswith("clip.wav:") and server.service.folder not in d["error"]
        assert "Traceback" not in d["error"]
    assert server.idle()
    assert server.request("GET", "/api/health")[0] == 200  # still serving


def test_wrong_content_type_is_415(server):
    for ctype in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        status, _, d = server.post(b'{"a": 1}', ctype=ctype)
        assert status == 415 and "error" in d, ctype
    body, ctype = multipart(b"RIFF....", "a.wav", field="other")
    status, _, d = server.post(body, ctype=ctype)
    assert status == 400 and "field named file" in d["error"]
    assert server.idle()


def _read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _stream_zeros(port: int, head: bytes, *, chunked: bool, total: int = 1 << 30, chunk: int = 1 << 20):
    """Send ``head`` then up to ``total`` zero bytes; stop as soon as a response comes.  (status, body, sent)."""
    zeros = bytes(chunk)
    piece = (b"%x\r\n" % chunk + zeros + b"\r\n") if chunked else zeros
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        status, _, body = _read_response(sock)
    return status, json.loads(body), sent


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_gigabyte_of_zeros_is_refused_early_with_flat_memory(make_server, chunked):
    srv = make_server(max_upload_bytes=5 << 20, workers=1)
    before = rss_mb()
    length = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % (1 << 30)
    head = b"POST /api/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n" + length + b"\r\n\r\n"
    status, body, sent = _stream_zeros(srv.port, head, chunked=chunked)
    assert status == 413 and "limit of 5 MB" in body["error"]
    assert sent < 64 << 20, f"{sent >> 20} MB sent before the 413"
    assert rss_mb() - before < 60
    assert srv.idle(), "a temporary file was kept"
    assert srv.request("GET", "/api/health")[0] == 200


def test_a_client_that_disconnects_mid_upload_leaves_no_file(make_server):
    srv = make_server(max_upload_bytes=50 << 20, workers=1)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"POST /api/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                     b"Content-Length: %d\r\n\r\n" % (10 << 20))
        sock.sendall(bytes(1 << 20))
        deadline = time.monotonic() + 10
        while not srv.leftovers() and time.monotonic() < deadline:  # the upload is being written
            time.sleep(0.02)
        assert srv.leftovers()
    assert srv.idle(), "the half upload was kept"
    assert srv.request("GET", "/api/health")[0] == 200


@pytest.mark.slow
def test_twenty_concurrent_uploads_are_answered_200_or_503(make_server, metal):
    srv = make_server(workers=1, queue_size=2)
    x, sr = sf.read(metal, dtype="float32")
    data = wav_bytes(x[: 6 * sr], sr)

    def one(_):
        return srv.post(data, ctype="audio/wav")

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    statuses = [s for s, _, _ in answers]
    assert len(answers) == 20 and set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses
    for status, headers, d in answers:
        if status == 503:
            assert headers["retry-after"].isdigit() and "busy" in d["error"]
        else:
            assert d["genre"] == "metal"
    assert srv.idle()


# ---- the command


def test_serve_is_a_command_and_the_cli_imports_no_web_module():
    code = ("import sys, genre_id.cli\nfrom genre_id.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in ('starlette', 'uvicorn', 'python_multipart') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    assert out.stdout.strip() == "[]"
    out = subprocess.run([sys.executable, "-m", "genre_id.cli", "serve", "--help"], capture_output=True, text=True,
                         env=_env())
    assert out.returncode == 0 and "--max-upload-mb" in out.stdout and "127.0.0.1" in out.stdout


def test_serve_without_the_web_extra_says_how_to_install_it(monkeypatch, capsys):
    from genre_id.cli import main, serve

    monkeypatch.setattr(serve, "_missing_web_extra", lambda: True)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: genre-id serve needs the web extra: pip install 'genre-id[web]'"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}


@pytest.mark.slow
def test_serve_prints_its_url_and_stops_cleanly_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "genre_id.cli", "serve", "--port", "0", "-q"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("genre-id serve: http://127.0.0.1:"), line + proc.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/health")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- the page in a real browser


def _browser_or_skip():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Chromium or chromedriver is missing: apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is missing: pip install selenium")
    return chromium, driver


@pytest.fixture(scope="module")
def fake_mic(tmp_path_factory, metal) -> Path:
    """20 s of the metal clip as a 48 kHz 16-bit WAV: what Chromium's fake microphone plays."""
    from genre_id.audio import resample

    x, sr = sf.read(metal, dtype="float32")
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(path, resample(x[: 20 * sr], orig_sr=sr, target_sr=48000), 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(fake_mic):
    chromium, driver_path = _browser_or_skip()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager never downloads anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake_mic}", "--autoplay-policy=no-user-gesture-required",
                "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)  # a page that cannot load fails the test in 30 s, not after 120
    yield driver
    driver.quit()


def _wait(driver, predicate, timeout: float = 90):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: predicate(d))


def _open(driver, server: Server) -> None:
    driver.get(server.url)
    _wait(driver, lambda d: "Model" in d.find_element("id", "model-line").text, 20)


def _upload(driver, path: Path) -> None:
    driver.find_element("id", "file").send_keys(str(path))


def _top_genre(driver) -> str:
    return driver.find_element("css selector", "#bars .bar .name").text


@pytest.mark.slow
def test_browser_upload_shows_the_genre_bars(browser, server, metal):
    _open(browser, server)
    _upload(browser, metal)
    _wait(browser, lambda d: d.find_element("id", "result").is_displayed())
    assert _top_genre(browser) == "metal"
    assert len(browser.find_elements("css selector", "#bars .bar")) >= 3
    assert len(browser.find_elements("css selector", "#members .member")) == 2
    assert not browser.find_element("id", "error").is_displayed()


@pytest.mark.slow
def test_browser_listen_records_the_fake_microphone(browser, server):
    from selenium.webdriver.support.ui import Select

    _open(browser, server)
    Select(browser.find_element("id", "seconds")).select_by_value("5")
    browser.find_element("id", "listen").click()
    _wait(browser, lambda d: d.find_element("id", "result").is_displayed() or d.find_element("id", "error").text)
    assert browser.find_element("id", "error").text == ""
    assert browser.find_element("css selector", "#result-title .source").text == "recording.wav"
    assert _top_genre(browser) in ("metal", "rock")


@pytest.mark.slow
def test_browser_shows_one_line_for_a_text_file(browser, server, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not music\n" * 20)
    _open(browser, server)
    _upload(browser, text)
    _wait(browser, lambda d: d.find_element("id", "error").text)
    message = browser.find_element("id", "error").text
    assert message.startswith("notes.txt:") and "not a readable audio file" in message and "\n" not in message
    assert not browser.find_element("id", "result").is_displayed()


@pytest.mark.slow
def test_browser_screenshots_at_360_and_1280_px(browser, server, mini_dir, tmp_path):
    """A 90 s recording (metal, classical, jazz): bars, the timeline and the members, on a phone and a desktop."""
    parts = [sf.read(mini_dir / name, dtype="float32")[0] for name in
             (METAL, "classical/classical.00000.flac", "jazz/jazz.00000.flac")]
    long = tmp_path / "three genres.flac"
    sf.write(long, np.concatenate(parts), 22050)
    out = REPO / "artifacts" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for width in (1280, 360):
        browser.set_window_size(width, 900)
        _open(browser, server)
        _upload(browser, long)
        _wait(browser, lambda d: d.find_element("id", "result").is_displayed())
        assert len(browser.find_elements("css selector", "#timeline .window")) >= 3
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width  # no sideways scroll
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, height + 140)
        shot = tmp_path / f"page-{width}px.png"
        browser.save_screenshot(str(shot))
        shutil.copy(shot, out / shot.name)
        assert shot.stat().st_size > 10_000


@pytest.mark.slow
def test_worker_processes_give_the_same_answers(make_server, analyzer, metal):
    srv = make_server(workers=2, processes=True)
    expected = analyzer.analyze(metal).to_dict()
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: srv.post(metal.read_bytes(), ctype="audio/flac"), range(3)))
    for status, _, d in answers:
        assert status == 200 and {**d, "file": expected["file"]} == expected
    status, _, d = srv.post(b"not audio at all", ctype="audio/wav")
    assert status == 422 and d["error"].startswith("upload: ")
    assert srv.idle()


@pytest.mark.slow
def test_an_analysis_past_the_time_limit_is_stopped_and_frees_its_place(make_server, metal):
    x, sr = sf.read(metal, dtype="float32")
    srv = make_server(workers=1, processes=True, timeout_seconds=2)
    status, _, d = srv.post(wav_bytes(np.tile(x, 16), sr), ctype="audio/wav")  # 8 minutes: far past 2 s of work
    assert status == 504 and d == {"error": "upload: the analysis took longer than 2 s"}
    assert srv.idle(timeout=4), "the analysis went on in its worker after the time limit"
    status, _, d = srv.post(wav_bytes(x[: 5 * sr], sr), ctype="audio/wav")  # the same worker serves the next one
    assert status == 200 and d["genre"]


@pytest.mark.slow
def test_a_killed_worker_process_is_replaced_and_the_server_goes_on(make_server, metal):
    srv = make_server(workers=2, processes=True)
    for pid in list(srv.service.pool._processes):  # as the out-of-memory killer would
        os.kill(pid, signal.SIGKILL)
    first = srv.post(metal.read_bytes(), ctype="audio/flac")
    assert first[0] == 200 or (first[0] == 500 and first[2] == {
        "error": "upload: the worker process analysing it stopped; try again"})
    status, _, d = srv.post(metal.read_bytes(), ctype="audio/flac")
    assert status == 200 and d["genre"] == "metal"
    assert srv.idle()


def test_a_connection_the_server_closes_is_closed_although_worker_processes_were_forked_after_it(
        server, make_server):
    """Forked workers hold no inherited socket: else an idle keep-alive connection closed by the server stays
    open for the client (a browser's next request on it then waits for ever)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/api/health")
    assert conn.getresponse().read()  # the connection stays open (keep-alive)
    make_server(workers=1, processes=True)  # forks this process, that connection included
    conn.sock.settimeout(20)
    started = time.monotonic()
    try:
        closed = conn.sock.recv(1) == b""  # uvicorn closes an idle connection after 5 s
    except socket.timeout:
        closed = False
    assert closed and time.monotonic() - started < 15, "the server's close never reached the client"
    conn.close()

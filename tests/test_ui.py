"""The Dagster UI, rendered by a real dagster-webserver and read in headless Chromium.

What the UI shows first: the `ingest` group with one raw asset per feed, the marts
(order_state and its lineage) and the pipeline job with its schedule. The expected names come
from the feed contract (FEED_FOLDERS) and from the webserver's own GraphQL API, so the test
checks that the browser shows what the code location defines.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from orderwatch_dagster.lib.feeds import FEED_FOLDERS

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# Debian's chromium; ORDERWATCH_CHROMIUM points elsewhere (another distro, a local build).
CHROMIUM = Path(os.environ.get("ORDERWATCH_CHROMIUM", "/usr/bin/chromium"))
IN_CI = os.environ.get("CI", "").lower() == "true"
LOAD_TIMEOUT_S = 120
UI_TIMEOUT_MS = 30_000  # generous: the machine is shared and the UI fetches lazily
VIEWPORT = {"width": 1440, "height": 900}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

WORKSPACE_QUERY = """
{ workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } }
    ... on PythonError { message } } }
"""
REPOSITORY_QUERY = """
{ repositoriesOrError {
    ... on RepositoryConnection { nodes { name location { name }
        jobs { name description } schedules { name pipelineName } } }
    ... on PythonError { message } }
  assetNodes(assetKeys: [{path: ["marts", "order_state"]}]) {
    groupName description dependencyKeys { path } } }
"""
JOB_ASSETS_QUERY = """
query ($job: PipelineSelector!) { assetNodes(pipeline: $job) { groupName } }
"""


@dataclass(frozen=True)
class Webserver:
    url: str
    location: str
    repository: dict[str, Any]
    order_state: dict[str, Any]


def graphql(
    url: str, query: str, variables: dict[str, Any] | None = None, timeout: float = 10
) -> dict[str, Any]:
    payload = {"query": query, "variables": variables or {}}
    response = requests.post(f"{url}/graphql", json=payload, timeout=timeout)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_until_loaded(url: str, process: subprocess.Popen[bytes], log: Path) -> str:
    """Poll workspaceOrError until the location is LOADED; /server_info alone proves nothing."""
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {process.returncode}:\n{log_tail(log)}")
        try:
            workspace = graphql(url, WORKSPACE_QUERY, timeout=5)["workspaceOrError"]
        except requests.RequestException as error:
            last = repr(error)
        else:
            if workspace["__typename"] != "Workspace":
                pytest.fail(f"workspace failed to load: {workspace.get('message')}")
            for entry in workspace["locationEntries"]:
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    pytest.fail(f"code location {entry['name']} failed:\n{loaded['message']}")
                if entry["loadStatus"] == "LOADED" and loaded["__typename"] == "RepositoryLocation":
                    return entry["name"]
            last = repr(workspace["locationEntries"])
        time.sleep(1)
    pytest.fail(f"code location not loaded after {LOAD_TIMEOUT_S} s ({last}):\n{log_tail(log)}")


def default_signals() -> None:
    """Undo an inherited SIG_IGN: a backgrounded shell ignores SIGINT, and dagster maps
    SIGTERM onto SIGINT, so the webserver would otherwise shrug off SIGTERM (as the Makefile
    `ui` target notes)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group (webserver + its code server)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message + " (CI=true: the UI test must run)")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def webserver(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    # Depends on `chromium` so a machine without a browser skips before the ~20 s start-up.
    tmp = tmp_path_factory.mktemp("ui")
    dagster_home = tmp / "dagster_home"
    dagster_home.mkdir()
    # No telemetry calls from a test run.
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "ORDERWATCH_HOME": str(tmp / "orderwatch_home"),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "webserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "dagster-webserver"),
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches the code server
            preexec_fn=default_signals,
        )
    try:
        location = wait_until_loaded(url, process, log)
        data = graphql(url, REPOSITORY_QUERY)
        assert "nodes" in data["repositoriesOrError"], data["repositoriesOrError"]
        repositories = data["repositoriesOrError"]["nodes"]
        (repository,) = [r for r in repositories if r["location"]["name"] == location]
        (order_state,) = data["assetNodes"]
        yield Webserver(url=url, location=location, repository=repository, order_state=order_state)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser: Browser, webserver: Webserver) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=webserver.url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    page = context.new_page()
    # The "Join the Dagster community" pop-up shows a few seconds after the first load and
    # stays until skipped; Playwright runs this before any action or expect it would block.
    page.add_locator_handler(
        page.get_by_role("button", name="Skip", exact=True), lambda skip: skip.click()
    )
    yield page
    context.close()


def loose(text: str) -> re.Pattern[str]:
    """Match text the UI renders with zero-width spaces as word-break hints (job titles)."""
    return re.compile("\u200b?".join(map(re.escape, text)))


def test_ingest_group_lists_every_raw_feed(page: Page, webserver: Webserver) -> None:
    page.goto(f"/locations/{webserver.location}/asset-groups/ingest/list")
    expect(page.get_by_text("Asset Group in").first).to_be_visible()
    for feed in FEED_FOLDERS:
        expect(page.get_by_role("link", name=f"raw / {feed}").first).to_be_visible()
    # Exactly the seven feeds, no more: one catalog link per raw asset.
    links = page.locator("a[href^='/assets/raw/']")
    expect(links).to_have_count(len(FEED_FOLDERS))
    hrefs = {link.get_attribute("href") for link in links.all()}
    assert hrefs == {f"/assets/raw/{feed}" for feed in FEED_FOLDERS}


def test_order_state_page_shows_its_dbt_description(page: Page, webserver: Webserver) -> None:
    assert webserver.order_state["groupName"] == "marts"
    page.goto("/assets/marts/order_state")
    expect(page.get_by_text("Materialize", exact=True).first).to_be_visible()
    # The dbt model's description reaches the asset page (first words, before any markdown).
    opening = " ".join(webserver.order_state["description"].split()[:5])
    expect(page.get_by_text(opening).first).to_be_visible()
    expect(page.get_by_role("tab", name="Lineage")).to_be_visible()


def test_pipeline_job_page_shows_description_and_schedule(page: Page, webserver: Webserver) -> None:
    jobs = {job["name"]: job for job in webserver.repository["jobs"]}
    job = jobs["orderwatch_pipeline_job"]
    page.goto(f"/locations/{webserver.location}/jobs/{job['name']}")
    expect(page.get_by_role("heading", name=loose(job["name"]))).to_be_visible()
    expect(page.get_by_text(job["description"])).to_be_visible()
    schedules = [
        s["name"] for s in webserver.repository["schedules"] if s["pipelineName"] == job["name"]
    ]
    assert "orderwatch_hourly_schedule" in schedules
    for name in schedules:
        expect(page.locator(f"a[href$='/schedules/{name}']").first).to_be_visible()
    # The job covers every layer, and the UI counts the same assets as the API.
    selector = {
        "repositoryLocationName": webserver.location,
        "repositoryName": webserver.repository["name"],
        "pipelineName": job["name"],
    }
    assets = graphql(webserver.url, JOB_ASSETS_QUERY, {"job": selector})["assetNodes"]
    assert {"ingest", "staging", "marts"} <= {asset["groupName"] for asset in assets}
    expect(page.get_by_role("button", name=f"View {len(assets)} assets")).to_be_visible()
    # The job's graph opens on the feeds: the ingest group box, leftmost in the layout.
    expect(page.get_by_text("ingest", exact=True).first).to_be_visible()


def screenshot_without_popup(page: Page, path: Path) -> bytes:
    """A screenshot is no action, so the locator handler does not run: check for the pop-up.

    An `expect` does run the handler (which clicks "Skip"); clicking here as well would race it.
    """
    skip = page.get_by_role("button", name="Skip", exact=True)
    for _ in range(3):
        if skip.is_visible():
            expect(skip).to_be_hidden()
        shot = page.screenshot(path=path)
        if not skip.is_visible():
            return shot
    pytest.fail("the community pop-up keeps covering the page")


def png_stats(page: Page, png: bytes) -> dict[str, float]:
    """Decode the PNG in the browser (a real decoder) and measure how much is drawn on it."""
    probe = page.context.new_page()
    try:
        return probe.evaluate(
            """async (data) => {
                const img = new Image();
                img.src = "data:image/png;base64," + data;
                await img.decode();
                const canvas = document.createElement("canvas");
                canvas.width = img.width; canvas.height = img.height;
                const ctx = canvas.getContext("2d");
                ctx.drawImage(img, 0, 0);
                const px = ctx.getImageData(0, 0, img.width, img.height).data;
                const counts = new Map();
                for (let i = 0; i < px.length; i += 4) {
                    const key = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
                    counts.set(key, (counts.get(key) || 0) + 1);
                }
                const total = px.length / 4;
                const background = Math.max(...counts.values());
                return {width: img.width, height: img.height, colors: counts.size,
                        drawn: (total - background) / total};
            }""",
            base64.b64encode(png).decode(),
        )
    finally:
        probe.close()


def test_marts_asset_graph_renders(page: Page, webserver: Webserver, tmp_path: Path) -> None:
    # order_state's own lineage (the marts group spans the as-of, exception and model assets,
    # too wide for one viewport): the mart and every model it reads
    page.goto("/assets/marts/order_state?view=lineage")
    with contextlib.suppress(PlaywrightError):
        page.get_by_role("button", name="Skip", exact=True).click(timeout=5000)
    for mart in ("order_state",):
        expect(page.get_by_text(mart, exact=True).last).to_be_visible()
    # Every model order_state reads is drawn in the graph, other groups' ones as links.
    parents = [key["path"][-1] for key in webserver.order_state["dependencyKeys"]]
    assert parents
    # the models it reads are drawn beside it (the viewport shows those inside it)
    labels = [page.get_by_text(n, exact=True).or_(page.locator(f"[title='{n}']")) for n in parents]
    drawn = labels[0]
    for label in labels[1:]:
        drawn = drawn.or_(label)
    expect(drawn.first).to_be_visible()

    path = tmp_path / "marts_asset_graph.png"
    shot = screenshot_without_popup(page, path)
    assert path.read_bytes() == shot
    assert shot.startswith(b"\x89PNG\r\n\x1a\n")
    stats = png_stats(page, shot)
    assert (stats["width"], stats["height"]) == (VIEWPORT["width"], VIEWPORT["height"])
    # A blank or half-loaded page is one or two flat colours; the graph has text, edges, icons.
    assert stats["colors"] > 500, stats
    assert stats["drawn"] > 0.03, stats

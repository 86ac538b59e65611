"""The dashboard, end to end in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

Known logs are posted over real HTTP to a collector subprocess; the page is loaded and the
figures it shows are checked, filters and search are used, a detail view is opened (with
its redactions marked), and HAR files are downloaded through the browser and validated.
A burst of three seconds (a second collector) checks the charts' buckets, time axis and
latency percentiles, callers that share a label, and decoded query values; an empty
collector (a third) checks what the page says then, and that logs show up by themselves.

Screenshots of the charts are checked for their colours (tests/png.py reads them) and
kept in ``$DASHBOARD_SCREENSHOTS`` if set (else a temporary directory) for a look.

Chromium is required: without it these tests FAIL (CI installs it: ``apt-get install -y
chromium chromium-driver``; ``python3 dev.py test`` does it when it can).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from readme_metrics.build.redaction import mask
from readme_metrics.collector.storage import percentile
from tests.collector_rig import collector, make_log, post
from tests.png import colors_of, count_near
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.fail(
        f"the dashboard tests need Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): "
        "run `apt-get install -y chromium chromium-driver` (python3 dev.py test does it when it can)",
        pytrace=False,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

PASSWORD = "hunter2-s3cret"
BETA = mask("beta-secret-key-0042")  # a caller id as the SDK sends it
NOW = time.time()


def known_logs() -> list[dict[str, Any]]:
    """28 logs: 20 reads (10..200 ms, 4 of them 404), 5 logins, 3 server errors."""
    logs = []
    for i in range(1, 21):
        logs.append(
            make_log(
                url=f"http://api.test/items/{i}",
                duration_ms=10.0 * i,
                status=404 if i % 5 == 0 else 200,
                started=NOW - 600 + i,
                group_id="sha512-AAAA?alfa",
                label="Alpha Corp",
            )
        )
    for i in range(5):
        logs.append(
            make_log(
                method="POST",
                url="http://api.test/login",
                duration_ms=300.0,
                status=200 if i < 4 else 401,
                started=NOW - 300 + i,
                group_id=BETA,
                label="Beta Ltd",
                request_body=json.dumps({"user": f"user{i}", "password": f"[REDACTED {len(PASSWORD)}]"}),
                request_headers=[{"name": "Authorization", "value": "[REDACTED 20]"}],
            )
        )
    for i in range(3):
        logs.append(
            make_log(
                url="http://api.test/boom",
                duration_ms=5.0,
                status=500,
                started=NOW - 100 + i,
                group_id="sha512-AAAA?alfa",
                label="Alpha Corp",
                response_body='{"error":"boom"}',
            )
        )
    return logs


LOGS = known_logs()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = collector(tmp_path_factory.mktemp("dash") / "logs.sqlite3")
    try:
        assert post(srv.url, LOGS[:10]) == (202, {"accepted": 10, "stored": 10})
        assert post(srv.url, LOGS[10:], compress=True) == (202, {"accepted": 18, "stored": 18})
        yield srv
    finally:
        srv.stop()


ACME_LIVE = mask("acme-live-key-1234")  # two callers that share the label "Acme"
ACME_TEST = mask("acme-test-key-5678")
SOLO = mask("solo-key-9999")
CALLERS = ((ACME_LIVE, "Acme"), (ACME_TEST, "Acme"), (SOLO, "Solo Inc"))
BURST_START = math.floor(NOW) - 30  # a whole second: 50 ms buckets start there
SEARCH_URL = "http://api.test/search?q=red%20shoes%26socks&token=%5BREDACTED%204%5D"


def burst() -> tuple[list[dict[str, Any]], dict[int, list[float]]]:
    """121 logs in three seconds (1 to 3 in each 50 ms bucket, 13 ms into it), and the
    durations of each bucket. One of them is a search whose token the SDK redacted."""
    logs, durations = [], {}
    for k in range(60):
        for j in range(1 + k % 3):
            group_id, label = CALLERS[(k + j) % 3]
            duration = float((j * 37 + k * 11) % 100 + 1)
            durations.setdefault(k, []).append(duration)
            logs.append(
                make_log(
                    url=f"http://api.test/items/{k}",
                    started=BURST_START + k * 0.05 + 0.013,
                    duration_ms=duration,
                    status=500 if k % 10 == 0 and j == 0 else 200,
                    group_id=group_id,
                    label=label,
                )
            )
    search = make_log(url=SEARCH_URL, started=BURST_START + 30 * 0.05 + 0.02, duration_ms=42.0, group_id=SOLO)
    search["group"]["label"] = "Solo Inc"
    search["request"]["log"]["entries"][0]["request"]["queryString"] = [
        {"name": "q", "value": "red shoes&socks"},
        {"name": "token", "value": "[REDACTED 4]"},
    ]
    durations[30].append(42.0)
    return [*logs, search], durations


BURST, BURST_DURATIONS = burst()
SEARCH = BURST[-1]


@pytest.fixture(scope="module")
def burst_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = collector(tmp_path_factory.mktemp("burst") / "logs.sqlite3")
    try:
        assert post(srv.url, BURST) == (202, {"accepted": len(BURST), "stored": len(BURST)})
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def empty_app(tmp_path: Path) -> Iterator[Server]:
    srv = collector(tmp_path / "logs.sqlite3")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("DASHBOARD_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screens")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def downloads() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rm-downloads-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="rm-chromium-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# -- helpers --------------------------------------------------------------------------


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 15) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def generation(driver: WebDriver) -> int:
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-generation") or 0)


def settled(driver: WebDriver, after: int) -> None:
    """Wait until the page finished a refresh that started after generation ``after``."""
    body = driver.find_element(By.TAG_NAME, "body")
    wait(driver, lambda d: generation(d) > after and body.get_attribute("data-state") == "ready")


def load(driver: WebDriver, url: str) -> None:
    driver.get(url)
    settled(driver, 0)


def text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def list_rows(driver: WebDriver) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, "#log-list tbody tr[data-id]")


def change(driver: WebDriver, action: Callable[[], None]) -> None:
    """Do something that refreshes the page, and wait for the refresh."""
    before = generation(driver)
    action()
    settled(driver, before)


def detail_open(driver: WebDriver) -> WebElement:
    """The detail panel, once open and loaded."""
    detail = driver.find_element(By.ID, "detail")
    is_open = lambda d: "open" in (detail.get_attribute("class") or "")  # noqa: E731
    wait(driver, lambda d: is_open(d) and detail.get_attribute("data-state") == "ready")
    return detail


def downloaded(directory: Path, known: set[str], timeout: float = 15) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in directory.glob("*.har") if p.name not in known]
        if done and not list(directory.glob("*.crdownload")):
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no HAR downloaded to {directory} within {timeout}s: {list(directory.iterdir())}")


def ticks(chart: WebElement) -> list[str]:
    """The time axis labels of a chart."""
    return [str(t.text) for t in chart.find_elements(By.CSS_SELECTOR, "text.tick")]


def check_har(path: Path, expected: list[dict[str, Any]]) -> None:
    har = json.loads(path.read_text("utf-8"))
    assert set(har) == {"log"}
    assert har["log"]["version"] == "1.2"
    assert {"name", "version"} <= set(har["log"]["creator"])
    entries = har["log"]["entries"]
    ordered = sorted(expected, key=lambda log: log["request"]["log"]["entries"][0]["startedDateTime"])
    assert [e["_readmeLogId"] for e in entries] == [log["_id"] for log in ordered]
    for entry, log in zip(entries, ordered, strict=True):
        original = log["request"]["log"]["entries"][0]
        for key in ("startedDateTime", "time", "request", "response", "timings", "cache"):
            assert entry[key] == original[key], key
        for key in ("method", "url", "httpVersion", "headers", "queryString", "cookies", "headersSize", "bodySize"):
            assert key in entry["request"]
        for key in ("status", "statusText", "httpVersion", "headers", "cookies", "content", "redirectURL"):
            assert key in entry["response"]


# -- the tests ------------------------------------------------------------------------


def test_figures(app: Server, browser: WebDriver, screens: Path) -> None:
    load(browser, app.url + "/")
    browser.save_screenshot(str(screens / "figures.png"))
    assert text(browser, "#stat-total") == "28"
    assert text(browser, "#stat-errors") == "8"
    assert text(browser, "#stat-error-rate") == "28.6%"
    assert text(browser, "#stat-endpoints") == "3"
    assert text(browser, "#stat-callers") == "2"
    mix = {
        row.get_attribute("data-status"): row.find_element(By.CSS_SELECTOR, ".count").text
        for row in browser.find_elements(By.CSS_SELECTOR, "#status-mix tr[data-status]")
    }
    assert mix == {"200": "20", "401": "1", "404": "4", "500": "3"}
    row = browser.find_element(By.CSS_SELECTOR, '#latency tr[data-endpoint="GET /items/{id}"]')
    cells = {name: row.find_element(By.CSS_SELECTOR, f".{name}").text for name in ("count", "errors", "p50", "p95")}
    assert cells == {"count": "20", "errors": "4", "p50": "100.0", "p95": "190.0"}
    assert row.find_element(By.CSS_SELECTOR, ".p99").text == "200.0"
    login = browser.find_element(By.CSS_SELECTOR, '#latency tr[data-endpoint="POST /login"]')
    assert login.find_element(By.CSS_SELECTOR, ".p50").text == "300.0"
    callers = [
        [td.text for td in r.find_elements(By.TAG_NAME, "td")]
        for r in browser.find_elements(By.CSS_SELECTOR, "#callers tbody tr")
    ]
    assert callers == [["Alpha Corp", "23", "7"], ["Beta Ltd", "5", "1"]]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#recent-errors tr[data-id]")) == 8
    chart = browser.find_element(By.CSS_SELECTOR, "#chart-time svg")
    bars = chart.find_elements(By.CSS_SELECTOR, "g[data-total]")
    assert sum(int(g.get_attribute("data-total") or 0) for g in bars) == 28
    # 500 s of logs: 10 s buckets, the time axis in round minutes.
    assert chart.get_attribute("data-bucket-seconds") == "10"
    assert ticks(chart) and all(re.fullmatch(r"\d\d:\d\d", t) for t in ticks(chart)), ticks(chart)
    assert len(list_rows(browser)) == 28
    assert "28 shown of 28" in text(browser, "#log-count")


def test_filters_and_search(app: Server, browser: WebDriver) -> None:
    load(browser, app.url + "/")
    change(browser, lambda: Select(browser.find_element(By.ID, "f-status")).select_by_value("errors"))
    assert text(browser, "#stat-total") == "8"
    assert len(list_rows(browser)) == 8
    change(browser, lambda: Select(browser.find_element(By.ID, "f-group")).select_by_value(BETA))
    assert text(browser, "#stat-total") == "1"
    assert [r.get_attribute("data-id") for r in list_rows(browser)] == [LOGS[24]["_id"]]
    change(browser, lambda: browser.find_element(By.ID, "reset").click())
    assert text(browser, "#stat-total") == "28"
    change(browser, lambda: Select(browser.find_element(By.ID, "f-endpoint")).select_by_value("GET /boom"))
    assert text(browser, "#stat-total") == "3"
    change(browser, lambda: browser.find_element(By.ID, "reset").click())
    change(browser, lambda: browser.find_element(By.ID, "f-q").send_keys("user3"))
    assert [r.get_attribute("data-id") for r in list_rows(browser)] == [LOGS[23]["_id"]]
    change(browser, lambda: browser.find_element(By.ID, "reset").click())
    # A time range that excludes everything but the 3 newest (the /boom errors).
    browser.execute_script(
        "const o = document.createElement('option'); o.value = arguments[0]; o.text = 'custom';"
        "document.getElementById('f-range').append(o);",
        str(int(time.time() - NOW + 150)),
    )
    change(browser, lambda: Select(browser.find_element(By.ID, "f-range")).select_by_visible_text("custom"))
    assert text(browser, "#stat-total") == "3"
    change(browser, lambda: browser.find_element(By.ID, "reset").click())
    # Clicking a status in the mix filters by it.
    change(browser, lambda: browser.find_element(By.CSS_SELECTOR, '#status-mix tr[data-status="404"]').click())
    assert text(browser, "#stat-total") == "4"


def test_detail_view_marks_redactions(app: Server, browser: WebDriver) -> None:
    load(browser, app.url + "/")
    login = LOGS[21]
    browser.find_element(By.CSS_SELECTOR, f'#log-list tr[data-id="{login["_id"]}"] td:nth-child(4)').click()
    detail = browser.find_element(By.ID, "detail")
    wait(
        browser,
        lambda d: "open" in (detail.get_attribute("class") or "") and detail.get_attribute("data-state") == "ready",
    )
    assert browser.current_url == f"{app.url}/logs/{login['_id']}"
    assert text(browser, "#detail-title") == "200 POST http://api.test/login"
    assert text(browser, "#detail-id") == login["_id"]
    assert text(browser, "#detail-duration").startswith("300.0 ms")
    marks = browser.find_elements(By.CSS_SELECTOR, "#detail-body mark.redacted")
    assert sorted(m.text for m in marks) == ["[REDACTED 14]", "[REDACTED 20]"]
    assert "2 values redacted" in text(browser, "#detail-redactions")
    body = text(browser, "#detail-request-body")
    assert '"user": "user1"' in body and f'"password": "[REDACTED {len(PASSWORD)}]"' in body
    assert PASSWORD not in browser.page_source
    assert "null" not in text(browser, "#detail-body") and "undefined" not in text(browser, "#detail-body")
    assert "Accept" not in text(browser, "#detail-response-headers")
    assert "application/json" in text(browser, "#detail-response-headers")
    assert '"ok": true' in text(browser, "#detail-response-body")
    # The masked caller key is marked as such.
    assert browser.find_element(By.CSS_SELECTOR, "#detail-body mark.masked").text == BETA
    # Raw view: the stored JSON, as stored.
    browser.find_element(By.ID, "detail-raw-toggle").click()
    assert json.loads(text(browser, "#detail-raw")) == login
    browser.find_element(By.ID, "detail-raw-toggle").click()
    browser.find_element(By.ID, "detail-close").click()
    wait(browser, lambda d: "open" not in (detail.get_attribute("class") or ""))
    assert browser.current_url == app.url + "/"


def test_log_link_opens_the_detail(app: Server, browser: WebDriver) -> None:
    """``{baseUrl}/logs/{_id}`` (the x-documentation-url target) opens that exchange."""
    boom = LOGS[-1]
    browser.get(f"{app.url}/logs/{boom['_id']}")
    detail = browser.find_element(By.ID, "detail")
    wait(
        browser,
        lambda d: detail.get_attribute("data-state") == "ready" and "open" in (detail.get_attribute("class") or ""),
    )
    assert text(browser, "#detail-title") == "500 GET http://api.test/boom"
    assert '"error": "boom"' in text(browser, "#detail-response-body")
    assert text(browser, "#detail-redactions") == "no redacted values"
    browser.get(f"{app.url}/logs/no-such-log")
    wait(browser, lambda d: d.find_element(By.ID, "detail").get_attribute("data-state") == "ready")
    assert "no such log" in text(browser, "#detail-error")


def test_export_selected_and_filtered_as_har(app: Server, browser: WebDriver, downloads: Path) -> None:
    load(browser, app.url + "/")
    chosen = [LOGS[2], LOGS[21], LOGS[26]]
    for log in chosen:
        browser.find_element(By.CSS_SELECTOR, f'#log-list tr[data-id="{log["_id"]}"] input.pick').click()
    button = browser.find_element(By.ID, "export-har")
    assert button.text == "Export 3 selected as HAR"
    known = {p.name for p in downloads.iterdir()}
    button.click()
    check_har(downloaded(downloads, known), chosen)
    wait(browser, lambda d: "exported 3 entries" in text(d, "#export-status"))

    # Nothing selected: everything matching the filters.
    browser.find_element(By.ID, "clear-selection").click()
    assert button.text == "Export all matching as HAR"
    change(browser, lambda: Select(browser.find_element(By.ID, "f-status")).select_by_value("5xx"))
    known = {p.name for p in downloads.iterdir()}
    time.sleep(1.1)  # the file name carries the second; keep it distinct from the last one
    button.click()
    check_har(downloaded(downloads, known), LOGS[-3:])


def test_a_burst_gets_fine_buckets_round_times_and_latency(
    burst_app: Server, browser: WebDriver, screens: Path
) -> None:
    """Three seconds of logs: 60 bars of 50 ms (not three fat ones), whole seconds on the
    time axis (not milliseconds), and p50/p95 per bucket beside them."""
    load(browser, burst_app.url + "/")
    assert text(browser, "#stat-total") == str(len(BURST))
    chart = browser.find_element(By.CSS_SELECTOR, "#chart-time svg")
    assert chart.get_attribute("data-bucket-seconds") == "0.05"
    bars = [int(g.get_attribute("data-total") or 0) for g in chart.find_elements(By.CSS_SELECTOR, "g[data-total]")]
    assert bars == [len(BURST_DURATIONS[k]) for k in range(60)]
    assert len(ticks(chart)) == 4 and all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in ticks(chart)), ticks(chart)

    latency = browser.find_element(By.CSS_SELECTOR, "#chart-latency svg")
    shown = {
        int(g.get_attribute("data-index") or -1): tuple(
            float(g.get_attribute(f"data-{p}") or 0) for p in ("p50", "p95")
        )
        for g in latency.find_elements(By.CSS_SELECTOR, "g.point")
    }
    expected = {k: (percentile(sorted(d), 50), percentile(sorted(d), 95)) for k, d in BURST_DURATIONS.items()}
    assert shown == expected
    assert ticks(latency) == ticks(chart)
    assert len(latency.find_elements(By.TAG_NAME, "polyline")) == 2  # no empty bucket: one unbroken line each

    browser.save_screenshot(str(screens / "burst-page.png"))
    requests_png, latency_png = chart.screenshot_as_png, latency.screenshot_as_png
    (screens / "burst-requests.png").write_bytes(requests_png)
    (screens / "burst-latency.png").write_bytes(latency_png)
    drawn = colors_of(requests_png)
    assert count_near(drawn, "#22a06b") > 2000, "no 2xx bars drawn"
    assert count_near(drawn, "#dc3545") > 100, "no 5xx bars drawn"
    drawn = colors_of(latency_png)
    assert count_near(drawn, "#3348c8") > 300, "no p50 line drawn"
    assert count_near(drawn, "#d9480f") > 300, "no p95 line drawn"


def test_callers_sharing_a_label_show_their_key_ends(burst_app: Server, browser: WebDriver) -> None:
    load(browser, burst_app.url + "/")
    names = {ACME_LIVE: "Acme …1234", ACME_TEST: "Acme …5678", SOLO: "Solo Inc"}
    table = {
        r.get_attribute("data-group"): r.find_element(By.TAG_NAME, "td").text
        for r in browser.find_elements(By.CSS_SELECTOR, "#callers tbody tr")
    }
    assert table == names
    counts = {gid: sum(1 for log in BURST if log["group"]["id"] == gid) for gid in names}
    options = {o.get_attribute("value"): o.text for o in Select(browser.find_element(By.ID, "f-group")).options}
    assert options == {"": "All callers", **{gid: f"{names[gid]} ({counts[gid]})" for gid in names}}
    by_id = {log["_id"]: log["group"]["id"] for log in BURST}
    rows = list_rows(browser)
    assert len(rows) == 100
    for row in rows:
        caller = row.find_elements(By.TAG_NAME, "td")[6]
        assert caller.text == names[by_id[row.get_attribute("data-id") or ""]]
        assert caller.get_attribute("title") == by_id[row.get_attribute("data-id") or ""]


def test_redacted_query_values_show_decoded(burst_app: Server, browser: WebDriver, screens: Path) -> None:
    load(browser, burst_app.url + "/")
    shown = "http://api.test/search?q=red shoes%26socks&token=[REDACTED 4]"  # an escaped & stays escaped
    row = browser.find_element(By.CSS_SELECTOR, f'#log-list tr[data-id="{SEARCH["_id"]}"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    (screens / "decoded-query-row.png").write_bytes(row.screenshot_as_png)
    cell = row.find_element(By.CSS_SELECTOR, "td:nth-child(4)")
    assert cell.text == shown
    assert cell.get_attribute("title") == SEARCH_URL
    assert [m.text for m in cell.find_elements(By.CSS_SELECTOR, "mark.redacted")] == ["[REDACTED 4]"]
    cell.click()
    detail_open(browser)
    assert text(browser, "#detail-title") == f"200 GET {shown}"
    browser.save_screenshot(str(screens / "decoded-query-detail.png"))
    assert [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#detail-title mark.redacted")] == ["[REDACTED 4]"]
    browser.find_element(By.ID, "detail-close").click()


def test_an_empty_collector_says_how_to_use_it_and_logs_show_up_by_themselves(
    empty_app: Server, browser: WebDriver, screens: Path
) -> None:
    load(browser, empty_app.url + "/")
    empty = browser.find_element(By.ID, "empty-state")
    assert empty.is_displayed()
    assert text(browser, "#empty-command") == f"README_METRICS_SERVER={empty_app.url} gunicorn myapp:app"
    assert f'metrics_server="{empty_app.url}"' in empty.text
    for hidden in (".cards", "#filters", "#log-list", "#chart-time"):
        assert not browser.find_element(By.CSS_SELECTOR, hidden).is_displayed(), hidden
    assert browser.find_element(By.ID, "live").is_selected()
    assert not browser.find_element(By.ID, "export-har").is_enabled()
    browser.save_screenshot(str(screens / "empty.png"))
    assert count_near(colors_of(empty.screenshot_as_png), "#1d2330", 40) > 500, "the empty state shows no text"

    # Logs arrive: the page shows them without a click.
    logs = [make_log(started=time.time() - i, label=f"Caller {i}", group_id=mask(f"key-{i}")) for i in range(3)]
    assert post(empty_app.url, logs)[0] == 202
    wait(browser, lambda d: text(d, "#stat-total") == "3")
    assert not empty.is_displayed()
    assert {r.get_attribute("data-id") for r in list_rows(browser)} == {log["_id"] for log in logs}
    button = browser.find_element(By.ID, "export-har")
    assert button.is_enabled()
    # Filters that match nothing: nothing to export.
    change(browser, lambda: browser.find_element(By.ID, "f-q").send_keys("no-such-text"))
    assert "No logs match." in text(browser, "#log-list")
    assert not button.is_enabled()
    change(browser, lambda: browser.find_element(By.ID, "reset").click())
    assert button.is_enabled()
    browser.save_screenshot(str(screens / "after-logs-arrived.png"))


# -- route templates, metadata, exceptions, sampled logs and outgoing calls (issues 16, 17) --


def feature_logs() -> list[dict[str, Any]]:
    """An order that failed (route, metadata, exception) and made two calls; a sampled read; others."""

    def entry(log: dict[str, Any]) -> dict[str, Any]:
        return log["request"]["log"]["entries"][0]  # type: ignore[no-any-return]

    failed = make_log(
        log_id="order-failed",
        method="POST",
        url="http://api.test/orders/981",
        status=500,
        duration_ms=80.0,
        started=NOW - 300,
    )
    entry(failed).update(
        _route="/orders/{order_id}",
        _metadata={"tenant": "north", "plan": "gold"},
        _exception={
            "type": "PaymentDeclined",
            "message": "card declined for password=[REDACTED 6]",
            "traceback": [
                {"file": "/srv/app/views.py", "line": 41, "function": "create_order"},
                {"file": "/srv/app/payments.py", "line": 17, "function": "charge"},
            ],
        },
    )
    calls = []
    for i, (url, status) in enumerate((("https://pay.example/charges", 402), ("https://stock.example/items/981", 200))):
        call = make_log(
            log_id=f"call-{i}",
            method="POST" if i == 0 else "GET",
            url=url,
            status=status,
            duration_ms=20.0 + i,
            started=NOW - 300 + 0.01 * (2 - i),
        )  # stored newest first
        entry(call).update(_direction="outgoing", _parent="order-failed")
        calls.append(call)
    sampled = make_log(log_id="sampled-read", url="http://api.test/orders/5", started=NOW - 200)
    entry(sampled).update(_route="/orders/{order_id}", _weight=4, _metadata={"tenant": "south"})
    plain = make_log(log_id="plain-read", url="http://api.test/orders/6", started=NOW - 100)
    entry(plain).update(_route="/orders/{order_id}", _metadata={"tenant": "north"})
    return [failed, *calls, sampled, plain]


@pytest.fixture(scope="module")
def feature_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = collector(tmp_path_factory.mktemp("dash-features") / "logs.sqlite3")
    try:
        assert post(srv.url, feature_logs()) == (202, {"accepted": 5, "stored": 5})
        yield srv
    finally:
        srv.stop()


def test_routes_weights_and_outgoing_calls_in_the_figures(feature_app: Server, browser: WebDriver) -> None:
    load(browser, feature_app.url + "/")
    # Requests served: 1 + 4 (a log kept at a rate of 1 in 4) + 1; the calls made are apart.
    assert text(browser, "#stat-total") == "6"
    endpoints = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#latency tbody td.mono")]
    assert sorted(endpoints) == ["GET /orders/{order_id}", "POST /orders/{order_id}"]
    outgoing = browser.find_element(By.ID, "outgoing-panel")
    assert outgoing.is_displayed()
    hosts = sorted(
        r.get_attribute("data-host") for r in browser.find_elements(By.CSS_SELECTOR, "#outgoing-hosts tbody tr")
    )
    assert hosts == ["pay.example", "stock.example"]
    calls = sorted(
        r.get_attribute("data-endpoint") for r in browser.find_elements(By.CSS_SELECTOR, "#outgoing tbody tr")
    )
    assert calls == ["GET stock.example/items/{id}", "POST pay.example/charges"]
    # An endpoint's row shows those calls in the log list.
    change(browser, browser.find_element(By.CSS_SELECTOR, '#outgoing tr[data-endpoint^="POST"]').click)
    assert [r.get_attribute("data-id") for r in list_rows(browser)] == ["call-0"]
    change(browser, browser.find_element(By.ID, "reset").click)
    error = browser.find_element(By.CSS_SELECTOR, '#recent-errors tr[data-id="order-failed"]')
    assert error.find_element(By.CSS_SELECTOR, ".exception-type").text == "PaymentDeclined"


def test_detail_shows_exception_metadata_and_the_calls_made(feature_app: Server, browser: WebDriver) -> None:
    load(browser, feature_app.url + "/")
    browser.find_element(By.CSS_SELECTOR, '#recent-errors tr[data-id="order-failed"]').click()
    detail_open(browser)
    assert text(browser, "#detail-route") == "/orders/{order_id}"
    assert text(browser, "#detail-exception-type") == "PaymentDeclined"
    assert text(browser, "#detail-exception-message") == "card declined for password=[REDACTED 6]"
    frames = [f.text.split() for f in browser.find_elements(By.CSS_SELECTOR, "#detail-exception tr.frame")]
    assert frames == [["/srv/app/views.py", "41", "create_order"], ["/srv/app/payments.py", "17", "charge"]]
    assert "tenant" in text(browser, "#detail-metadata") and "gold" in text(browser, "#detail-metadata")
    # The calls it made, in time order.
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#detail-calls tr.call"))
    calls = browser.find_elements(By.CSS_SELECTOR, "#detail-calls tr.call")
    assert [c.get_attribute("data-id") for c in calls] == ["call-1", "call-0"]
    assert "https://stock.example/items/981" in calls[0].text and "402" in calls[1].text
    # A call's own detail links back to the request.
    calls[1].click()
    wait(browser, lambda d: d.find_elements(By.ID, "detail-direction") and text(d, "#detail-id") == "call-0")
    assert text(browser, "#detail-parent") == "order-failed"
    browser.find_element(By.ID, "detail-parent").click()
    wait(browser, lambda d: d.find_elements(By.ID, "detail-id") and text(d, "#detail-id") == "order-failed")


def test_log_list_filters_by_a_metadata_value(feature_app: Server, browser: WebDriver) -> None:
    load(browser, feature_app.url + "/")
    browser.get(f"{feature_app.url}/logs/plain-read")
    detail_open(browser)
    before = generation(browser)
    link = next(
        row.find_element(By.CSS_SELECTOR, "a.meta-filter")
        for row in browser.find_elements(By.CSS_SELECTOR, "#detail-metadata tr")
        if row.text.startswith("tenant")
    )
    link.click()
    settled(browser, before)
    assert browser.find_element(By.ID, "f-meta-key").get_attribute("value") == "tenant"
    assert browser.find_element(By.ID, "f-meta-value").get_attribute("value") == "north"
    assert sorted(r.get_attribute("data-id") for r in list_rows(browser)) == ["order-failed", "plain-read"]
    browser.find_element(By.ID, "reset").click()

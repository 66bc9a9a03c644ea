"""report.html in a real browser: Debian's headless Chromium, driven over its DevTools protocol
on loopback (aiohttp's websocket client; no other tool). The page is a real experiment's: the
verdict first, the figures drawn, nothing fetched from anywhere, and the copy button handing
the environment block to the clipboard."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
from conftest import TINY
from helpers import experiment

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (apt install chromium)")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A real result folder's report.html, open in headless Chromium: a function that
    evaluates JavaScript in the page and returns the value."""
    folder = tmp_path_factory.mktemp("report") / "r"
    # pauses long enough to settle: a verdict with an environment block to copy
    done = experiment(*TINY, "--allocators", "glibc,jemalloc", "--pause", "3", "--out", str(folder))
    assert done.returncode == 0, done.stderr[-2000:]
    report = folder / "report.html"
    assert report.exists()
    profile = tmp_path_factory.mktemp("chromium-profile")
    browser = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            report.as_uri(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = browser.stderr.readline()
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = int(found.group(1)) if found else None
            assert line or browser.poll() is None, "chromium exited before it listened"
        assert port, "chromium never said where DevTools listens"
        loop = asyncio.new_event_loop()
        session = loop.run_until_complete(_connect(port, report.as_uri()))
        run = loop.run_until_complete

        def evaluate(expression: str):
            # bounded: a page whose script never answers fails the test, never hangs it
            return run(asyncio.wait_for(session(expression), 30))

        evaluate.problems = session.problems
        evaluate.screenshot = lambda: run(session.call("Page.captureScreenshot", format="png"))
        evaluate.folder = folder
        yield evaluate
        loop.run_until_complete(session.close())
        loop.close()
    finally:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()


async def _connect(port: int, url: str):
    import aiohttp

    http = aiohttp.ClientSession()
    target = None
    for _ in range(100):
        async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
            pages = [t for t in await answer.json() if t.get("type") == "page"]
        target = next((t for t in pages if t.get("url") == url), None)
        if target:
            break
        await asyncio.sleep(0.1)
    assert target, f"no page target for {url}"
    socket = await http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
    ids = itertools.count(1)
    problems: list[dict] = []  # the page's console errors and uncaught exceptions

    async def call(method: str, **params):
        number = next(ids)
        await socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = json.loads((await socket.receive()).data)
            if message.get("method") in ("Runtime.exceptionThrown", "Log.entryAdded"):
                entry = message["params"].get("entry") or message["params"]
                if message["method"] == "Runtime.exceptionThrown" or entry.get("level") == "error":
                    problems.append(message["params"])
            elif (
                message.get("method") == "Runtime.consoleAPICalled"
                and message["params"].get("type") == "error"
            ):
                problems.append(message["params"])
            if message.get("id") == number:
                return message.get("result") or {}

    async def evaluate(expression: str):
        result = await call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def close():
        await socket.close()
        await http.close()

    evaluate.close = close
    evaluate.call = call
    evaluate.problems = problems
    # a first screen of 1280 × 800; the console watched from a fresh load on
    await call(
        "Emulation.setDeviceMetricsOverride",
        width=1280,
        height=800,
        deviceScaleFactor=1,
        mobile=False,
    )
    await call("Runtime.enable")
    await call("Log.enable")
    await call("Page.enable")
    await call("Page.reload", ignoreCache=True)
    loaded = (  # this document (not the blank one before it), parsed, its script run
        f"document.readyState === 'complete' && location.href === {json.dumps(url)} "
        "&& !!document.querySelector('body > script')"
    )
    for _ in range(400):
        if await evaluate(loaded):
            break
        await asyncio.sleep(0.05)
    return evaluate


def test_the_verdict_comes_first(page):
    # right under the title: the verdict, with the memory figure beside it
    assert page("document.querySelector('h1').nextElementSibling.firstElementChild.id") == (
        "verdict"
    )
    assert page("document.querySelector('#verdict h2').textContent") == "Verdict"
    assert "jemalloc against glibc" in page("document.querySelector('#verdict').innerText")


def test_the_figures_are_drawn_inline(page):
    widths = page(
        "[...document.querySelectorAll('figure svg')].map(s => s.getBoundingClientRect().width)"
    )
    assert widths and all(w > 200 for w in widths), widths
    assert page("document.querySelectorAll('img, link, script[src], iframe').length") == 0


def test_each_figure_follows_the_text_it_draws(page):
    """The floors figure under the floors table, the trade-off under the price table, the
    layers under the layers and diagnosis; none left over for the end of the page."""
    before = page(
        "Object.fromEntries([...document.querySelectorAll('figure[data-file]')].map(f => {"
        " let e = f.previousElementSibling;"
        " while (e && e.tagName === 'FIGURE') e = e.previousElementSibling;"
        " return [f.dataset.file, e ? e.tagName + ' ' + e.innerText.slice(0, 40) : null]; }))"
    )
    assert before["floors.svg"].startswith("TABLE variant"), before
    assert before["tradeoff.svg"].startswith("TABLE"), before
    assert page(
        "document.querySelector('figure[data-file=\"tradeoff.svg\"]')"
        ".previousElementSibling.previousElementSibling.innerText"
    ).startswith("The price")
    assert before["layers.svg"].startswith("UL glibc"), before  # the diagnosis's list
    headings = page("[...document.querySelectorAll('h2')].map(h => h.textContent)")
    assert "More figures" not in headings, headings


def test_nothing_is_fetched_from_anywhere(page):
    assert page("performance.getEntriesByType('resource').length") == 0


def test_the_copy_button_copies_the_environment(page):
    expected = page("document.querySelector('#verdict pre code').innerText")
    assert expected.strip()
    copied = page(
        "new Promise(resolve => {"
        "  navigator.clipboard.writeText = text => { resolve(text); return Promise.resolve(); };"
        "  document.querySelector('#verdict button.copy').click();"
        "  setTimeout(() => resolve(null), 3000);"  # no handler ran: nothing copied
        "})"
    )
    assert copied == expected
    assert page("document.querySelector('#verdict button.copy').textContent") == "Copied"


def test_the_verdict_and_the_memory_figure_are_on_the_first_screen(page):
    """At 1280 × 800: the verdict's text and the memory figure, whole, without scrolling; a
    screenshot of that screen is kept beside the report (first-screen.png) for a look."""
    verdict = page("JSON.stringify(document.querySelector('#verdict').getBoundingClientRect())")
    figure = page(
        "JSON.stringify(document.querySelector('figure[data-file=\"memory.svg\"] svg')"
        ".getBoundingClientRect())"
    )
    for box in (json.loads(verdict), json.loads(figure)):
        assert box["top"] >= 0 and box["bottom"] <= 800 and box["width"] > 300, box
    import base64

    shot = base64.b64decode(page.screenshot()["data"])
    assert shot.startswith(b"\x89PNG")
    (page.folder / "first-screen.png").write_bytes(shot)


def test_no_console_error_and_no_uncaught_exception(page):
    assert page("document.querySelectorAll('#verdict button.copy').length") == 1
    assert page.problems == []

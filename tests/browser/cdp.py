"""A headless Chromium driven over the Chrome DevTools protocol, just enough for the page.

The browser is Debian's ``chromium`` (``scripts/browser`` installs it when missing);
the protocol is spoken directly over its WebSocket endpoint with the ``websockets``
package the project already depends on: no driver download, nothing from a CDN.
Every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.helpers import ROOT

_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def chromium_path() -> str:
    """The browser's path, installing Debian's package when missing (``scripts/browser``)."""
    proc = subprocess.run([str(ROOT / "scripts" / "browser")], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"no Chromium for the browser tests: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


class Browser:
    """One headless Chromium process with a throw-away profile."""

    def __init__(self, executable: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.process = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--mute-audio",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stderr is not None
        deadline = time.monotonic() + 30
        endpoint = None
        while endpoint is None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools endpoint within 30 s")
            line = self.process.stderr.readline()
            match = _LISTENING.search(line)
            if match:
                endpoint = match.group(1)
        self.http = endpoint.split("/devtools/")[0].replace("ws://", "http://")

    def new_page(self) -> Page:
        request = urllib.request.Request(f"{self.http}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            target = json.load(response)
        return Page(target["webSocketDebuggerUrl"], target["id"], self)

    def close_target(self, target_id: str) -> None:
        try:
            urllib.request.urlopen(f"{self.http}/json/close/{target_id}", timeout=5).read()
        except OSError:
            pass

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: commands in order, events kept as problems (exceptions, errors, CSP)."""

    def __init__(self, ws_url: str, target_id: str, browser: Browser) -> None:
        self.ws: ClientConnection = connect(ws_url, max_size=None, open_timeout=10)
        self.target_id = target_id
        self.browser = browser
        self._next_id = 0
        self.problems: list[str] = []
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Log.enable")
        self.resize(1400, 900)

    def send(self, method: str, timeout: float = 20, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{method}: no answer within {timeout} s")
            message = json.loads(self.ws.recv(timeout=left))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.problems.append(f"exception: {text}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error" and entry.get("source") != "network":
                self.problems.append(f"{entry.get('source')}: {entry.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.problems.append(f"console.error: {params.get('args')}")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout=20,
                      message=f"{url} to load")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 10, message: str | None = None,
                 interval: float = 0.05) -> Any:
        """Poll a JavaScript expression until it is truthy; its value (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                shown = self.evaluate("document.body.innerText.slice(0, 1500)")
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {message or expression}; "
                    f"the page showed:\n{shown}"
                )
            time.sleep(interval)

    def click(self, selector: str) -> None:
        found = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return false; el.click(); return true; })()"
        )
        assert found, f"nothing to click at {selector}"

    def set_value(self, selector: str, value: str) -> None:
        found = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            f" if (!el) return false; el.value = {json.dumps(value)};"
            " el.dispatchEvent(new Event('change', {bubbles: true})); return true; })()"
        )
        assert found, f"no field at {selector}"

    def resize(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  width=width, height=height, deviceScaleFactor=1, mobile=False)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.browser.close_target(self.target_id)


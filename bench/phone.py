"""How fast the phone app's report screen is usable on a slow 3G link, cold and warm.

    python bench/phone.py [--runs 3] [--chromium /usr/bin/chromium]

Starts `gridproof serve` on a free port with a fresh SQLite database and one grid worker,
then, in headless Chromium with a 360×640 phone viewport and the network emulated through
CDP (Network.emulateNetworkConditions: 400 kbit/s down and up, 400 ms latency):

- cold: a new browser profile (empty HTTP cache, no service worker) with the worker's token
  on the device, opening /m/ — the shell, its modules and /api/v1/categories all come over
  the slow link;
- warm: /m/ opened again in the same profile, with the service worker installed.

"Usable" is the moment the report screen has drawn its category tiles and the submit
button (the app's `performance.mark("gp-report-ready")`), measured from navigation start.
Prints the median and every run, and the app's JavaScript + CSS size.
"""

import argparse
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.routers.pages import phone_files  # noqa: E402
from tests.e2e.conftest import CHROMIUM_ARGS  # noqa: E402

SLOW_3G = {
    "offline": False,
    "latency": 400,  # ms, added to every request
    "downloadThroughput": 400_000 / 8,  # bytes/s
    "uploadThroughput": 400_000 / 8,
}
PHONE = {
    "viewport": {"width": 360, "height": 640},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "zh-CN",
    "geolocation": {"latitude": 34.75, "longitude": 113.78, "accuracy": 10},
    "permissions": ["geolocation"],
}
PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "GRIDPROOF_DATABASE_URL": f"sqlite:///{workdir / 'gp.db'}",
        "GRIDPROOF_UPLOAD_DIR": str(workdir / "uploads"),
    }

    def gridproof(*args: str, stdin: bytes | None = None) -> None:
        command = [sys.executable, "-m", "app", *args]
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, input=stdin)

    gridproof("migrate")
    gridproof("org", "add", "JKQ", "--name", "经开区", "--kind", "district")
    user = ("user", "add", "bench", "--role", "worker", "--org", "JKQ", "--password-stdin")
    gridproof(*user, stdin=PASSWORD.encode() + b"\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start")


def sign_in(base: str) -> tuple[str, str]:
    """The token and user as the app keeps them in localStorage (JSON)."""
    response = httpx.post(
        f"{base}/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}
    )
    response.raise_for_status()
    body = response.json()
    return json.dumps(body["token"]), json.dumps(body["user"])


def open_report(page: Page, base: str) -> float:
    """Open /m/ over the slow link; ms from navigation start until the report screen is usable."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", SLOW_3G)
    page.goto(f"{base}/m/", wait_until="commit")
    page.wait_for_selector("body[data-ready=report]", state="attached", timeout=60_000)
    page.get_by_role("button", name="提交").wait_for()
    mark: float = page.evaluate(
        "() => performance.getEntriesByName('gp-report-ready')[0].startTime"
    )
    cdp.detach()
    return mark


def one_run(browser: Browser, base: str, token: str, user: str) -> tuple[float, float]:
    context = browser.new_context(**PHONE)  # type: ignore[arg-type]
    # Signed in already (the token is on the device), nothing else cached.
    seed = f"localStorage.setItem('gp.token', {json.dumps(token)});"
    seed += f"localStorage.setItem('gp.user', {json.dumps(user)});"
    context.add_init_script(f"if (!localStorage.getItem('gp.token')) {{ {seed} }}")
    try:
        page = context.new_page()
        cold = open_report(page, base)
        page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
        page.close()
        warm_page = context.new_page()
        warm = open_report(warm_page, base)
        assert warm_page.evaluate("() => !!navigator.serviceWorker.controller"), "no SW"
        return cold, warm
    finally:
        context.close()


def budget() -> tuple[int, int]:
    bodies = [p.read_bytes() for p in phone_files() if p.suffix in (".js", ".css")]
    return sum(map(len, bodies)), sum(len(gzip.compress(b)) for b in bodies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--chromium", default=os.environ.get("GRIDPROOF_CHROMIUM", "/usr/bin/chromium")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(Path(tmp), port)
        try:
            token, user = sign_in(base)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=args.chromium, args=CHROMIUM_ARGS
                )
                runs = [one_run(browser, base, token, user) for _ in range(args.runs)]
                version = browser.version
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    cold = [c for c, _ in runs]
    warm = [w for _, w in runs]
    raw, zipped = budget()
    print(f"phone app /m/ on emulated slow 3G (400 kbit/s, 400 ms), Chromium {version}, 360×640")
    print(
        f"  cold load → report screen usable: {statistics.median(cold):7.0f} ms  "
        f"(runs: {', '.join(f'{c:.0f}' for c in cold)})"
    )
    print(
        f"  warm load (service worker):       {statistics.median(warm):7.0f} ms  "
        f"(runs: {', '.join(f'{w:.0f}' for w in warm)})"
    )
    print(
        f"  app JavaScript + CSS: {raw / 1024:.1f} KB uncompressed, {zipped / 1024:.1f} KB gzipped "
        f"(budget 150 KB uncompressed)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

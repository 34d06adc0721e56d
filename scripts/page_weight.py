"""Bytes a reader's browser transfers for each page of the built site, and its console errors.

    python scripts/page_weight.py [SITE] [PAGE ...]

SITE defaults to _build/html; the pages default to a text-only page and a widget page.
The site is served on 127.0.0.1 (no compression, like a plain static host) and opened in
Debian's headless Chromium with an empty cache; every request that is not for the site is
blocked. Prints the total bytes per page, the largest files (TOP, default 5) and every console
error or failed request.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

PAGES = ["book/notation.html", "book/04-worked-example.html"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _measure_page(browser: object, root: str, path: str, top: int) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(root) else r.abort())
    page = context.new_page()
    sizes: dict[str, int] = {}
    errors: list[str] = []
    page.on("requestfinished", lambda r: sizes.__setitem__(
        r.url.split("?")[0].removeprefix(root), r.sizes()["responseBodySize"]))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and errors.append(
        f"HTTP {r.status} {r.url.removeprefix(root)}"))
    page.goto(f"{root}/{path}")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)
    total = sum(sizes.values())
    print(f"{path}: {total:,} bytes in {len(sizes)} files")
    for url, n in sorted(sizes.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {n:>10,}  {url}")
    for e in errors:
        print(f"    console error: {e}")
    context.close()


def measure(site: Path, pages: list[str]) -> None:
    """Print the bytes transferred for each of ``pages`` of the site at ``site``."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = f"http://127.0.0.1:{server.server_address[1]}"
    top = int(os.environ.get("TOP", 5))
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "chromium", args=["--no-sandbox"])
        for path in pages:
            _measure_page(browser, root, path, top)
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    site = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("_build/html")
    measure(site, sys.argv[2:] or PAGES)

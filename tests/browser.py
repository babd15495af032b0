"""Headless Chromium helpers for report tests (Playwright driving Debian's chromium)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking",
                 "--disable-gpu", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic"]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if not path:
        raise RuntimeError("Debian's chromium is not installed; run the README's test command "
                           "(it installs it) or: apt-get install -y chromium")
    return path


@dataclass
class PageReport:
    """What happened while a report page loaded."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    broken_anchors: list[str] = field(default_factory=list)
    text: str = ""
    image_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ReportBrowser:
    """One headless Chromium reused for many pages (start it once per test session)."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(executable_path=chromium_path(),
                                                     args=CHROMIUM_ARGS, headless=True)
        except BaseException:
            self._pw.stop()
            raise

    def close(self) -> None:
        """Close the browser and stop Playwright."""
        try:
            self._browser.close()
        finally:
            self._pw.stop()

    def open(self, html: Path, screenshot: Path | None = None, width: int = 1200,
             media: str | None = None, bypass_csp: bool = False,
             probes: dict[str, str] | None = None, pdf: Path | None = None) -> PageReport:
        """Load ``html`` from file:// and record errors, requests, images and anchors;
        optionally save a full-page screenshot (``media="print"`` emulates printing), run
        ``probes`` (name -> JS function source; results in ``extra``) and print to ``pdf``."""
        rep = PageReport()
        url = html.resolve().as_uri()
        context = self._browser.new_context(viewport={"width": width, "height": 900},
                                            bypass_csp=bypass_csp)
        try:
            page = context.new_page()
            if media:
                page.emulate_media(media=media)  # type: ignore[arg-type]
            _inspect(page, url, rep, screenshot)
            for name, js in (probes or {}).items():
                rep.extra[name] = page.evaluate(js)
            if pdf is not None:
                pdf.parent.mkdir(parents=True, exist_ok=True)
                page.pdf(path=str(pdf), print_background=True)
        finally:
            context.close()
        return rep


def _inspect(page: Any, url: str, rep: PageReport, screenshot: Path | None) -> None:
    page.on("console", lambda m: rep.console_errors.append(m.text)
            if m.type == "error" else None)
    page.on("pageerror", lambda e: rep.page_errors.append(str(e)))
    page.on("request", lambda r: rep.requests.append(r.url)
            if r.url != url else None)
    page.on("requestfailed", lambda r: rep.failed_requests.append(r.url))
    page.on("dialog", lambda d: (rep.dialogs.append(d.message), d.dismiss()))
    page.goto(url, wait_until="load")
    rep.text = page.inner_text("body")
    rep.image_count = page.eval_on_selector_all("img", "els => els.length")
    rep.broken_images = page.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0))"
               ".map(e => e.alt)")
    rep.broken_anchors = page.eval_on_selector_all(
        "a[href^='#']", "els => els.map(e => e.getAttribute('href').slice(1))"
                        ".filter(id => !document.getElementById(id))")
    rep.extra["scripts"] = page.eval_on_selector_all("script", "els => els.length")
    rep.extra["event_handlers"] = page.evaluate(
        "() => Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes)"
        ".some(a => a.name.toLowerCase().startsWith('on'))).length")
    rep.extra["pwned"] = page.evaluate("() => window.__pwned === undefined ? null : "
                                       "String(window.__pwned)")
    rep.extra["toc_anchors"] = page.eval_on_selector_all(
        "nav.toc a[href^='#']", "els => els.map(e => e.getAttribute('href').slice(1))")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(screenshot), full_page=True)
        except Exception:  # Chromium sometimes fails one capture of a very tall page under load
            page.screenshot(path=str(screenshot), full_page=True)


_shared: ReportBrowser | None = None


def shared_browser() -> ReportBrowser:
    """The one Chromium of this process (Playwright's sync API allows one instance per
    thread); closed by :func:`close_shared_browser` at the end of the test session."""
    global _shared
    if _shared is None:
        _shared = ReportBrowser()
    return _shared


def close_shared_browser() -> None:
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


def open_report(html: Path, screenshot: Path | None = None, width: int = 1200) -> PageReport:
    """Load ``html`` from file:// in the shared headless Chromium and record errors, requests,
    images, anchors; optionally save a full-page screenshot."""
    return shared_browser().open(html, screenshot, width)

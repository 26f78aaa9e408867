"""The operator panel in a real browser: Playwright driving Debian's headless Chromium.

Log in, start a procedure from its form with a bad then a good parameter, answer the operator
dialog, watch the live plot receive points, open the report and sign it; then abort a run and see
the read-back safe state. A screenshot of each page is written to test-artifacts/panel/.
Chromium comes from .ci/install-chromium.sh (Playwright's own browser download is never used);
without it these tests skip and say why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reports.key_registry import Registry
from reports.synthetic import make_signer
from reports.verify import verify_bundle
from tests.panel_fixtures import PASSWORDS, PanelServer, make_accounts

CHROMIUM = Path(os.environ.get("RIG_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "panel"
PASSPHRASE = "correct horse battery staple"
WAIT_MS = 90_000  # generous: a busy 2-core machine; every wait is for a condition, never a sleep

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: run .ci/install-chromium.sh (Debian's chromium package)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        except Exception as exc:  # noqa: BLE001 - a broken browser install is a skip, with the reason
            pytest.skip(f"Chromium at {CHROMIUM} does not start under Playwright: {exc}")
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, station_writer) -> Iterator[PanelServer]:
    root = tmp_path_factory.mktemp("browser")
    registry = Registry(root / "keys" / "registry.json")
    make_signer(registry, root / "keys", "olivia", "Olivia", ["performed_by"], passphrase=PASSPHRASE)
    station = station_writer(root, set={"signing.admin_keys": list(registry.pinned)})  # the root of trust
    accounts = make_accounts(root / "accounts.json", keys={"olivia": str(root / "keys" / "olivia.key")})
    with PanelServer(station, accounts=accounts, host="0.0.0.0", registry=registry.path) as server:
        yield server


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


@pytest.fixture
def page(browser: object, lab: PanelServer) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=lab.url)  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/")
    page.wait_for_url("**/login?next=/")
    shot(page, "01-login")
    page.fill("#user", "olivia")
    page.fill("#password", PASSWORDS["olivia"])
    page.click("button[type=submit]")
    page.wait_for_url(lab.url + "/")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def start_from_form(page: object, fields: dict[str, str]) -> None:
    for name, value in fields.items():
        page.fill(f"#f-{name}", value)  # type: ignore[attr-defined]
    page.click("#proc-form button[type=submit]")  # type: ignore[attr-defined]


@pytest.mark.timeout(600)  # a loaded 2-core machine: every wait is for a condition
def test_login_form_errors_dialog_live_plot_report_and_signature(page: object, lab: PanelServer) -> None:
    expect = sync_api.expect
    expect(page.get_by_test_id("mode")).to_contain_text("sim")
    shot(page, "02-station")
    page.click("text=delivery_check")
    page.wait_for_url("**/procedures/delivery_check")
    start_from_form(page, {"rate_ml_h": "fast", "duration_min": "2", "item_serial": "NE1000-SIM-0001"})
    error = page.locator("#e-rate_ml_h")
    expect(error).to_contain_text("is not a number")
    expect(page.locator("#f-rate_ml_h")).to_have_attribute("aria-invalid", "true")
    shot(page, "03-form-inline-error")
    assert not lab.station.runs_dir.exists() or not any(lab.station.runs_dir.glob("*/record.jsonl"))
    start_from_form(page, {"rate_ml_h": "6", "duration_min": "3", "settle_s": "5"})
    page.wait_for_url("**/jobs/*", timeout=WAIT_MS)

    dialog = page.locator("dialog#prompt")
    expect(dialog).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#prompt-text")).to_contain_text("Prime the line")
    expect(page.locator("#prompt-image")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#prompt-image').naturalWidth > 0")
    shot(page, "04-operator-dialog")
    page.keyboard.press("Enter")  # the focused "Done" button: keyboard only
    expect(dialog).to_be_hidden(timeout=WAIT_MS)

    page.wait_for_function("() => window.__panel.pointsDrawn >= 5", timeout=WAIT_MS)
    drawn = page.evaluate("window.__panel.pointsDrawn")
    assert drawn >= 5
    shot(page, "05-live-run")
    expect(page.get_by_test_id("outcome")).to_have_text("PASS", timeout=WAIT_MS)
    assert page.locator("#measurements tr").count() >= 1
    shot(page, "06-run-finished")

    page.get_by_test_id("run-link").click()
    page.wait_for_url("**/runs/*")
    # the item entries came with the form: answered by the run's operator identity (her printed name)
    expect(page.get_by_test_id("answered-by").first).to_have_text("Olivia")
    report_href = page.get_by_test_id("report-link").get_attribute("href")
    report = page.context.new_page()
    response = report.goto(report_href)
    assert response is not None and response.ok
    expect(report.locator("body")).to_contain_text("delivery_check")
    shot(report, "07-report")
    report.close()

    expect(page.get_by_test_id("verify")).to_contain_text("unsigned")
    page.select_option("select[name=role]", "performed_by")
    page.fill("input[name=passphrase]", PASSPHRASE)
    page.click("form.sign button[type=submit]")
    expect(page.get_by_test_id("sign-result")).to_contain_text("Signed as performed_by", timeout=WAIT_MS)
    expect(page.get_by_test_id("verify")).to_contain_text("VALID, 1 signature(s)")
    shot(page, "08-signed")
    run_id = page.url.rsplit("/", 1)[1]
    check = verify_bundle(lab.station.runs_dir / run_id / "report", Registry.load(lab.service.trust.registry_path, pinned=lab.service.trust.pinned))
    assert check.ok and [s.role for s in check.signatures] == ["performed_by"]


@pytest.mark.timeout(600)  # a loaded 2-core machine: every wait is for a condition
def test_abort_button_ends_in_the_read_back_safe_state(page: object, lab: PanelServer) -> None:
    expect = sync_api.expect
    page.goto("/procedures/delivery_check")
    start_from_form(page, {"duration_min": "600", "item_serial": "NE1000-SIM-0001"})
    page.wait_for_url("**/jobs/*", timeout=WAIT_MS)
    expect(page.locator("dialog#prompt")).to_be_visible(timeout=WAIT_MS)
    page.click("#prompt-ok")
    page.wait_for_function("() => window.__panel.pointsDrawn >= 2", timeout=WAIT_MS)
    abort = page.locator("#abort")
    expect(abort).to_be_in_viewport()
    abort.click()
    expect(page.locator("#safe-state")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#safe-summary")).to_contain_text("Confirmed")
    expect(page.locator("#safe-rows tr")).to_have_count(len(lab.station.instruments))
    expect(page.get_by_test_id("outcome")).to_have_text("ABORTED", timeout=WAIT_MS)
    expect(page.locator("#abort-state")).to_contain_text("safe state")
    shot(page, "09-aborted-safe-state")


@pytest.mark.timeout(600)  # a loaded 2-core machine: every wait is for a condition
def test_panel_fits_a_tablet(browser: object, lab: PanelServer) -> None:
    context = browser.new_context(viewport={"width": 800, "height": 1180}, base_url=lab.url)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto("/login")
    page.fill("#user", "rita")
    page.fill("#password", PASSWORDS["rita"])
    page.click("button[type=submit]")
    page.wait_for_url(lab.url + "/")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 800, f"the station page scrolls sideways on a tablet ({width} px)"
    shot(page, "10-tablet-station")
    context.close()

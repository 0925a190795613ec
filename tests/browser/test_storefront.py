"""The storefront in a real browser: Playwright driving Debian's Chromium against a live Django server.

Chromium comes from apt (`playwright install` cannot download here); `.ci/run` installs it. Without it these tests
skip loudly, and fail under REQUIRE_SERVICES=1 (CI). Photos are generated; screenshots of each state go to
var/screenshots/ (ignored by git): `make screenshots` rewrites them.
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import another_view, encode, scene
from tests.services import require

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # Playwright's sync API runs an event loop in this thread
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    require("Chromium", Path(CHROMIUM).exists(), "apt-get install chromium, or set CHROMIUM=/path/to/chromium")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, settings):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.route(f"{live_server.url}/media/**", lambda route: _serve_media(route, settings.MEDIA_ROOT))
    page.base = live_server.url
    console_errors = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
    blocked = [text for text in console_errors if "Content Security Policy" in text]
    assert not blocked, f"the page broke its own Content-Security-Policy: {blocked}"


def _serve_media(route, root) -> None:
    """Media files are not served by Django with DEBUG off: the test hands them to the browser itself."""
    path = Path(root) / route.request.url.split("/media/", 1)[1]
    if path.is_file():
        route.fulfill(status=200, body=path.read_bytes(), content_type="image/jpeg")
    else:
        route.fulfill(status=404)


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def photo_file(tmp_path, seed: int) -> Path:
    path = tmp_path / f"shopper-{seed}.jpg"
    path.write_bytes(encode(another_view(scene(seed)), "JPEG"))
    return path


def titles(page, grid: str = "#result-grid") -> list[str]:
    return page.locator(f"{grid} article h3").all_inner_texts()


def test_home_page_lists_products_by_category(page, catalog):
    page.goto(page.base + "/")
    assert len(page.locator("#products article").all()) == 5  # the inactive product is not shown
    shoot(page, "home-desktop")
    page.get_by_role("navigation", name="Categories").get_by_role("link", name="shoes").click()
    assert page.locator("#products article").count() == 2  # sku-1 and sku-3 (sku-5 is inactive)
    assert "category=shoes" in page.url


def test_product_page_similar_products_leave_the_product_out(page, catalog):
    page.goto(page.base + catalog[2].get_absolute_url())
    strip = page.locator("section.similar article h3")
    assert strip.count() == 4 and catalog[2].title not in strip.all_inner_texts()
    shoot(page, "product-desktop")


def test_upload_with_the_file_picker_finds_the_product(page, catalog, tmp_path, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    page.goto(page.base + "/search/")
    with page.expect_navigation():
        page.set_input_files('#photo-search input[name="image"]', str(photo_file(tmp_path, 2)))
    page.wait_for_selector("#result-grid")
    assert titles(page)[0] == catalog[2].title
    assert "q=" in page.url and page.locator("#photo-preview").is_visible()
    assert "close match" in page.locator("#search-status").inner_text()
    shoot(page, "results-desktop")


def test_upload_from_the_header_on_a_phone(browser, live_server, catalog, tmp_path, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.route(f"{live_server.url}/media/**", lambda route: _serve_media(route, settings.MEDIA_ROOT))
    page.goto(live_server.url + "/")
    shoot(page, "home-phone")
    with page.expect_navigation():
        page.set_input_files('.quick-search input[name="image"]', str(photo_file(tmp_path, 4)))
    page.wait_for_selector("#result-grid")
    assert titles(page)[0] == catalog[4].title
    assert page.locator('input[name="camera"]').get_attribute("capture") == "environment"
    assert page.locator("label.camera").is_visible()  # the camera button shows on touch screens
    shoot(page, "results-phone")
    context.close()


def _drop_or_paste(page, data: bytes, event: str) -> None:
    page.evaluate(
        """([b64, event]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "photo.jpg", {type: "image/jpeg"}));
            if (event === "drop") {
                document.getElementById("dropzone").dispatchEvent(
                    new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
            } else {
                document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true, cancelable: true}));
            }
        }""",
        [base64.b64encode(data).decode(), event],
    )


@pytest.mark.parametrize("event", ["drop", "paste"])
def test_drop_or_paste_a_photo(page, catalog, settings, event):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    page.goto(page.base + "/search/")
    with page.expect_navigation(url="**/search/?q=*"):
        _drop_or_paste(page, encode(another_view(scene(3)), "JPEG"), event)
    assert titles(page)[0] == catalog[3].title


def test_a_huge_photo_is_downscaled_before_upload(page, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0, "MAX_UPLOAD_BYTES": 200_000}
    upscaled = another_view(scene(1)).resize((3000, 2400))
    big = encode(Image.blend(upscaled, Image.effect_noise((3000, 2400), 30).convert("RGB"), 0.05), "PNG")
    assert len(big) > 200_000 + 64 * 1024  # the server alone would refuse it
    page.goto(page.base + "/search/")
    with page.expect_navigation(url="**/search/?q=*"):
        _drop_or_paste(page, big, "drop")
    assert titles(page)[0] == catalog[1].title


def test_changing_a_filter_searches_again_from_page_one(page, catalog, tmp_path, settings, monkeypatch):
    from visualsearch import views

    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    monkeypatch.setattr(views, "RESULTS_PER_PAGE", 2)
    page.goto(page.base + "/search/")
    with page.expect_navigation():
        page.set_input_files('#photo-search input[name="image"]', str(photo_file(tmp_path, 2)))
    assert len(titles(page)) == 2
    page.click("#load-more")  # appended in place: same URL, no new upload
    playwright.expect(page.locator("#result-grid article")).to_have_count(4)  # (no wait_for_function: CSP bans eval)
    assert "page=" not in page.url
    with page.expect_navigation():
        page.select_option('select[name="category"]', "bags")
    assert "category=bags" in page.url and "page=" not in page.url
    assert set(titles(page)) <= {catalog[n].title for n in (0, 2, 4)}


def test_no_close_matches_shows_the_nearest_products(page, catalog, tmp_path, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": 0.999}
    page.goto(page.base + "/search/")
    with page.expect_navigation():
        page.set_input_files('#photo-search input[name="image"]', str(photo_file(tmp_path, 77)))
    assert page.get_by_role("heading", name="No close matches").is_visible()
    assert page.locator("#nearest-grid article").count() == 5
    assert page.locator("#search-status").inner_text() == "No close matches"
    shoot(page, "no-close-matches-desktop")


def test_bad_filters_and_expired_searches_say_so_on_the_page(page, catalog):
    response = page.goto(page.base + "/search/?q=" + "0" * 32)
    assert response.status == 410 and "expired" in page.get_by_role("alert").inner_text()
    response = page.goto(page.base + "/search/?q=" + "0" * 32 + "&min_price=-5")
    assert response.status == 400 and "Price from" in page.get_by_role("alert").first.inner_text()
    response = page.goto(page.base + "/?category=nonsense")
    assert response.status == 404 and "nonsense" in page.get_by_role("alert").inner_text()


def two_products(tmp_path) -> Path:
    """One photo showing two products side by side: sku-1 on the left, sku-3 on the right."""
    photo = Image.new("RGB", (512, 256))
    photo.paste(another_view(scene(1)).resize((256, 256)), (0, 0))
    photo.paste(another_view(scene(3)).resize((256, 256)), (256, 0))
    path = tmp_path / "two.jpg"
    path.write_bytes(encode(photo, "JPEG", quality=95))
    return path


def _search_two_products(page, tmp_path) -> None:
    page.goto(page.base + "/search/")
    with page.expect_navigation():
        page.set_input_files('#photo-search input[name="image"]', str(two_products(tmp_path)))
    page.wait_for_selector("#crop-box", state="visible")


def test_crop_by_mouse_searches_the_marked_part(page, catalog, tmp_path, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    _search_two_products(page, tmp_path)
    frame = page.locator("#crop-frame").bounding_box()
    handle = page.locator('.handle[data-edge="nw"]').bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(frame["x"] + frame["width"] * 0.5, frame["y"] + 2, steps=8)
    with page.expect_navigation(url="**box=*"):
        page.mouse.up()
    left = float(page.url.split("box=")[1].split("%2C")[0])
    assert 0.45 < left < 0.55
    assert titles(page)[0] == catalog[3].title
    shoot(page, "crop-desktop")


def test_crop_by_keyboard_searches_the_marked_part(page, catalog, tmp_path, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    _search_two_products(page, tmp_path)
    page.focus("#crop-box")
    for _ in range(25):
        page.keyboard.press("Shift+ArrowLeft")  # narrower: the left half
    assert "50%" in page.locator("#search-status").inner_text()
    for _ in range(25):
        page.keyboard.press("ArrowRight")  # moved onto the right half
    with page.expect_navigation(url="**box=*"):
        page.keyboard.press("Enter")
    assert "box=0.5000%2C0.0000%2C1.0000%2C1.0000" in page.url
    assert titles(page)[0] == catalog[3].title
    page.focus("#crop-box")
    for _ in range(25):
        page.keyboard.press("ArrowLeft")
    with page.expect_navigation(url="**box=*"):
        page.keyboard.press("Enter")
    assert titles(page)[0] == catalog[1].title  # the left half now


def test_a_wrong_box_is_explained_on_the_page(page, catalog, tmp_path):
    _search_two_products(page, tmp_path)
    response = page.goto(page.url + "&box=0.9,0,0.1,1")
    assert response.status == 400 and "Crop box" in page.get_by_role("alert").first.inner_text()


def accessibility_violations(page) -> list[str]:
    """axe-core's WCAG 2.x A/AA violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
               "resultTypes": ["violations"]}
    results = Axe().run(page, options=options)
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]]


def test_pages_pass_an_automated_accessibility_check(page, catalog, tmp_path, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    page.goto(page.base + "/")
    assert accessibility_violations(page) == []
    page.goto(page.base + catalog[1].get_absolute_url())
    assert accessibility_violations(page) == []
    page.goto(page.base + "/search/")
    with page.expect_navigation():
        page.set_input_files('#photo-search input[name="image"]', str(two_products(tmp_path)))
    page.wait_for_selector("#crop-box", state="visible")
    assert accessibility_violations(page) == []


@pytest.fixture
def staff_page(page, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests")
    page.goto(page.base + "/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-for-tests")
    with page.expect_navigation():
        page.click('input[type="submit"]')
    return page


def test_admin_thumbnails_and_find_similar_grid(staff_page, catalog):
    page = staff_page
    page.goto(page.base + "/admin/catalog/product/")
    thumbnails = page.locator("#result_list .field-main_photo img")
    assert thumbnails.count() == 6
    assert page.evaluate("Array.from(document.querySelectorAll('.field-main_photo img')).every(i => i.naturalWidth > 0)")
    row = page.locator("#result_list tr", has_text=catalog[2].title)
    row.locator("input.action-select").check()
    page.select_option('select[name="action"]', "find_similar_products")
    with page.expect_navigation():
        page.click('button[name="index"]')
    cards = page.locator(".vs-grid figure.vs-card")
    assert cards.count() == 4 and catalog[2].title not in cards.all_inner_texts()
    shoot(page, "admin-find-similar")


def test_admin_warns_about_a_duplicate_photo_and_saves_it(staff_page, catalog, tmp_path):
    page = staff_page
    duplicate = tmp_path / "dup.jpg"
    duplicate.write_bytes(encode(scene(4), "JPEG"))  # sku-4's photo, again
    page.goto(page.base + "/admin/catalog/product/add/")
    page.fill("#id_relation_id", "copy-4")
    page.fill("#id_title", "Copy of four")
    page.set_input_files("#id_images-0-image", str(duplicate))
    with page.expect_navigation():
        page.click('input[name="_save"]')
    warning = page.locator("ul.messagelist li.warning")
    assert warning.count() == 1 and catalog[4].title in warning.inner_text()
    assert page.locator("ul.messagelist li.success").count() == 1  # saved all the same
    shoot(page, "admin-duplicate-warning")

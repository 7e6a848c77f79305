"""The viewer (modelzoo.app): its server over real HTTP, its page in a real headless Chromium.

The browser tests open real photographs with labels of known coordinates and
check, on the screenshot's pixels, that each is drawn where it should be;
they synchronise on attributes the page sets once it has drawn (never on
sleeps).
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import urllib.parse
from typing import Any, Dict, Iterator, List, Tuple

import httpx
import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo.drawing import class_color
from modelzoo.labels import Classification, Detection, Detections, Heatmap, Keypoint, Keypoints, Segmentation
from modelzoo.masks import box_pixels
from tests.browser import chrome, near, parse_rgb, screenshot, wait_for
from tests.images import photo, write_good_images, write_photos
from tests.processes import child_env
from tests.videos import pan_zoom, write_video

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

# --------------------------------------------------------------------------- data

#: on the astronaut (256 x 256): what each label is and where
ROCKET = [0.1, 0.1, 0.4, 0.3]       # predictions, with an L-shaped instance mask
PERSON = [0.55, 0.55, 0.4, 0.4]     # predictions, no mask
GT_ROCKET = [0.55, 0.05, 0.4, 0.3]  # ground truth (dashed)
POINTS = [[0.1, 0.7], [0.3, 0.9], [0.45, 0.7]]
EDGES = [[0, 1]]                    # 0-1 joined, 1-2 not
SIZE = 256


def _l_mask(box: List[float]) -> np.ndarray:
    """The box's mask: the left half, and the bottom half of the right half."""
    c0, r0, c1, r1 = box_pixels(box, SIZE, SIZE)
    mask = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    mask[:, : mask.shape[1] // 2] = True
    mask[mask.shape[0] // 2 :, :] = True
    return mask


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("viewer-photos")
    paths = write_photos(str(root), ["astronaut", "chelsea", "coffee"], scale=2)
    # a phone photo held upright: stored sideways, EXIF orientation 6
    img = Image.fromarray(photo("rocket")).convert("RGB").resize((150, 220)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = os.path.join(str(root), "rotated.jpg")
    img.save(rotated, exif=exif.tobytes())
    dataset = mz.Dataset.from_images(paths + [rotated], name="viewer-photos", overwrite=True)
    ids = dataset.ids()
    dataset.set_values("predictions", {ids[0]: Detections(detections=[
        Detection(label="cat", bounding_box=ROCKET, confidence=0.9, mask=_l_mask(ROCKET)),
        Detection(label="car", bounding_box=PERSON, confidence=0.4),
    ])})
    dataset.set_values("ground_truth", {ids[0]: Detections(detections=[Detection(label="cat", bounding_box=GT_ROCKET)])})
    dataset.set_values("pose", {ids[0]: Keypoints(keypoints=[Keypoint(label="dog", points=POINTS)])})
    dataset.set_values("scene", {i: Classification(label="bird", confidence=0.8) for i in ids})
    seg = np.zeros((150, 225), dtype=np.uint8)
    seg[:, 100:] = 1
    # the rotated photo's mask in a PNG file (as apply_model(output_dir=...) writes them): its bottom half "dog"
    on_disk = np.zeros((220, 150), dtype=np.uint8)
    on_disk[110:, :] = 2
    mask_file = os.path.join(str(root), "rotated-mask.png")
    Image.fromarray(on_disk).save(mask_file)
    dataset.set_values("segmentation", {
        ids[1]: Segmentation(mask=seg, mask_targets={"1": "cat"}),
        ids[3]: Segmentation(mask_path=mask_file, mask_targets={"2": "dog"}),
    })
    # a heatmap on the coffee photo (300 x 200): 0 on its left third, 1 on the rest
    heat = np.zeros((200, 300), dtype=np.float32)
    heat[:, 100:] = 1.0
    dataset.set_values("heat", {ids[2]: Heatmap(map=heat, range=[0.0, 1.0])})
    dataset.info["skeleton"] = {"labels": ["a", "b", "c"], "edges": EDGES}
    dataset.save_info()
    try:
        yield dataset
    finally:
        dataset.delete()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from chrome(tmp_path_factory.mktemp("chromium"))


@pytest.fixture(scope="module")
def app(photos: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    handle = photos.launch_app(cache_dir=str(tmp_path_factory.mktemp("thumbs")), workers=1)
    try:
        yield handle
    finally:
        handle.close()


def _open(driver: Any, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready === '1'"), "the page to load")


def _tiles_drawn(driver: Any) -> bool:
    """The grid and the sidebar have caught up with the last change, every tile drawn."""
    return driver.execute_script(
        "const g = document.getElementById('grid'); const t = [...document.querySelectorAll('.tile')];"
        "return document.body.dataset.settled === '1' && g.dataset.complete === '1' && t.length > 0"
        " && t.every(x => x.dataset.drawn === '1');"
    )


def _img_rect(driver: Any, selector: str) -> Tuple[float, float, float, float]:
    r = driver.execute_script(f"const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                              "return [r.left, r.top, r.width, r.height];")
    return tuple(r)  # type: ignore[return-value]


def _toggle(driver: Any, field: str, sample_id: str, shown: bool) -> None:
    """Clicks a field's on/off box and waits until the tile of ``sample_id`` is redrawn so."""
    driver.find_element("css selector", f'.field-toggle[data-field="{field}"]').click()
    wait_for(driver, lambda d: (field in json.loads(d.execute_script(
        f"return document.querySelector('.tile[data-id=\"{sample_id}\"]').dataset.objects"))) == shown,
        f"{field} {'shown' if shown else 'hidden'}")


def _swatch(driver: Any, cls: str) -> Tuple[int, int, int]:
    return parse_rgb(driver.execute_script(
        f"return getComputedStyle(document.querySelector('.swatch[data-class={json.dumps(cls)}]')).backgroundColor"))


# --------------------------------------------------------------------------- the server


def test_every_request_needs_the_token_and_media_is_served_only_for_samples_shown(photos: Any, tmp_path: Any) -> None:
    ids = photos.ids()
    handle = photos.select(ids[:2]).launch_app(cache_dir=str(tmp_path / "thumbs"), workers=1)
    try:
        base = handle.url.split("/?")[0]
        assert handle.url.startswith("http://127.0.0.1:")
        for path in ("/", "/api/info", "/api/samples", "/api/facets", f"/api/sample/{ids[0]}", f"/api/frames/{ids[0]}",
                     f"/media/{ids[0]}/full", f"/media/{ids[0]}/thumb", f"/media/{ids[0]}/frame/1", "/static/app.js"):
            r = httpx.get(base + path, timeout=30)
            assert r.status_code == 403, path
            assert "token" in r.text
        assert httpx.get(base + "/api/info?token=not-the-token", timeout=30).status_code == 403
        assert httpx.get(base + "/api/info", cookies={f"modelzoo_app_{handle.port}": "wrong"}, timeout=30).status_code == 403
        # the first page load sets the token as an HttpOnly, SameSite=Strict cookie
        page = httpx.get(handle.url, timeout=30)
        assert page.status_code == 200
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        with httpx.Client(cookies=page.cookies, timeout=60) as client:
            info = client.get(base + "/api/info").json()
            assert info["count"] == 2 and info["fields"]["predictions"] == "Detections"
            full = client.get(base + f"/media/{ids[0]}/full")
            assert full.status_code == 200 and full.content == open(photos[ids[0]].filepath, "rb").read()
            assert client.get(base + f"/media/{ids[0]}/thumb").headers["content-type"] == "image/jpeg"
            # a sample of the dataset that is not in the view shown, a non-id, a path: 404
            assert client.get(base + f"/media/{ids[2]}/full").status_code == 404
            assert client.get(base + "/media/..%2f..%2fetc%2fpasswd/full").status_code == 404
            assert client.get(base + "/media/%2fetc%2fpasswd/full").status_code == 404
            assert client.get(base + f"/api/sample/{ids[3]}").status_code == 404
            assert client.get(base + f"/media/{ids[0]}/frame/1").status_code == 404  # not a video
            # a state naming an unknown field: 400 with the fix
            bad = client.get(base + "/api/samples", params={"state": json.dumps({"filters": {"predictons": {}}})})
            assert bad.status_code == 400 and "Did you mean 'predictions'" in bad.json()["error"]
    finally:
        handle.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(handle.url, timeout=5)


def test_the_full_image_is_upright_and_thumbnails_are_made_once(app: Any, photos: Any) -> None:
    rotated = [s for s in photos if s.filepath.endswith("rotated.jpg")][0]
    page = httpx.get(app.url, timeout=30)
    base = app.url.split("/?")[0]
    with httpx.Client(cookies=page.cookies, timeout=60) as client:
        img = Image.open(io.BytesIO(client.get(base + f"/media/{rotated.id}/full").content))
        assert img.size == (150, 220) == (rotated.metadata.width, rotated.metadata.height)
        with Image.open(rotated.filepath) as stored:
            assert stored.size == (220, 150)  # stored sideways
        thumb = Image.open(io.BytesIO(client.get(base + f"/media/{rotated.id}/thumb").content))
        assert thumb.size[0] < thumb.size[1]  # upright too
    path = app.thumbnails.path_for(rotated.filepath)
    mtime = os.stat(path).st_mtime_ns
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # private, as the images are
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert app.thumbnails.submit(rotated.filepath).result(60) == path
    assert os.stat(path).st_mtime_ns == mtime  # cached: not made again


def test_modelzoo_app_command_serves_until_sigterm(photos: Any, tmp_path: Any) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelzoo", "app", photos.name, "--cache-dir", str(tmp_path / "thumbs")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"Viewer of {photos.name!r}: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()
        assert httpx.get(url, timeout=30).status_code == 200
        assert httpx.get(url.split("/?")[0] + "/api/info", timeout=30).status_code == 403
        proc.terminate()
        assert proc.wait(timeout=60) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_modelzoo_app_command_names_the_dataset_it_lacks(photos: Any, capsys: Any) -> None:
    from modelzoo.cli import main

    assert main(["app", "viewer-photoz"]) == 1
    err = capsys.readouterr().err
    assert "viewer-photoz" in err and "viewer-photos" in err  # the close match is suggested
    other = mz.Dataset("viewer-other", overwrite=True)  # two datasets or more: `modelzoo app` asks which
    try:
        assert main(["app"]) == 1
        err = capsys.readouterr().err
        assert "name the dataset to show" in err and "viewer-other" in err and "viewer-photos" in err
    finally:
        other.delete()


# --------------------------------------------------------------------------- the page


def test_grid_draws_boxes_masks_and_keypoints_where_they_are(app: Any, photos: Any, browser: Any) -> None:
    _open(browser, app.url)
    wait_for(browser, _tiles_drawn, "every tile drawn")
    first = photos.ids()[0]
    sel = f'.tile[data-id="{first}"] img'
    x0, y0, w, h = _img_rect(browser, sel)
    assert abs(w - h) < 1 and w > 150  # the square astronaut, drawn large enough to check
    objects = json.loads(browser.execute_script(f"return document.querySelector('.tile[data-id=\"{first}\"]').dataset.objects"))
    assert objects == {"predictions": 2, "ground_truth": 1, "pose": 1, "scene": 1}
    assert json.loads(browser.execute_script(
        f"return document.querySelector('.tile[data-id=\"{photos.ids()[3]}\"]').dataset.objects")) == {"segmentation": 1, "scene": 1}
    shot = screenshot(browser)
    at = lambda rx, ry: (x0 + rx * w, y0 + ry * h)  # noqa: E731
    # each class in the colour modelzoo.drawing gives it (zlib.crc32 of the name into its palette)
    rocket, person, pose = _swatch(browser, "cat"), _swatch(browser, "car"), _swatch(browser, "dog")
    assert (rocket, person, pose) == (class_color("cat"), class_color("car"), class_color("dog"))
    assert len({rocket, person, pose, class_color("bird")}) == 4
    # box outlines: the four edges of each prediction, in its class colour
    for box, color in ((ROCKET, rocket), (PERSON, person)):
        x, y, bw, bh = box
        for px, py in (at(x, y + bh / 2), at(x + bw, y + bh / 2), at(x + bw / 2, y + bh), at(x + bw * 0.7, y)):
            assert near(shot, px, py, color), (box, px, py, shot[int(py), int(px)], color)
        # and nothing of that colour a few pixels inside the right edge, away from masks
        if box is PERSON:
            inner = at(x + bw - 12 / w, y + bh / 2)
            assert not near(shot, inner[0], inner[1], color, radius=1, tol=20)
    # ground truth: dashed, in its class colour, somewhere along each edge
    gx, gy, gw, gh = GT_ROCKET
    for side in (at(gx, gy + gh / 2), at(gx + gw, gy + gh / 2)):
        assert near(shot, side[0], side[1], rocket, radius=8)
    # the instance mask: half-tinted where the mask is, untouched where it is not (in the box)
    second, third, fourth = photos.ids()[1:4]
    _toggle(browser, "predictions", first, False)
    _toggle(browser, "segmentation", second, False)
    _toggle(browser, "heat", third, False)
    bare = screenshot(browser)
    _toggle(browser, "predictions", first, True)
    _toggle(browser, "segmentation", second, True)
    _toggle(browser, "heat", third, True)
    x, y, bw, bh = ROCKET
    masked, unmasked = at(x + bw * 0.25, y + bh * 0.3), at(x + bw * 0.78, y + bh * 0.25)
    for (px, py), inside in ((masked, True), (unmasked, False)):
        with_mask = shot[int(py), int(px)].astype(float)
        without = bare[int(py), int(px)].astype(float)
        expected = 0.5 * without + 0.5 * np.asarray(rocket, float) if inside else without
        assert np.abs(with_mask - expected).max() <= 12, (inside, with_mask, without, expected)
    # keypoints: each point drawn; the skeleton joins 0-1, not 1-2
    for p in POINTS:
        assert near(shot, *at(*p), pose, radius=1), p
    mid01 = at((POINTS[0][0] + POINTS[1][0]) / 2, (POINTS[0][1] + POINTS[1][1]) / 2)
    mid12 = at((POINTS[1][0] + POINTS[2][0]) / 2, (POINTS[1][1] + POINTS[2][1]) / 2)
    assert near(shot, *mid01, pose, radius=1)
    assert np.abs(shot[int(mid12[1]), int(mid12[0])].astype(float) - bare[int(mid12[1]), int(mid12[0])]).max() <= 6
    # the semantic mask of the cat photo (class 1 from column 100 of 225 on): the right part
    # blended half-half with one colour (the same at every pixel), the left part untouched
    sx, sy, sw, sh = _img_rect(browser, f'.tile[data-id="{second}"] img')
    px = lambda img, rx, ry: img[int(sy + sh * ry), int(sx + sw * rx)].astype(float)  # noqa: E731
    tints = [2 * px(shot, rx, ry) - px(bare, rx, ry) for rx, ry in ((0.6, 0.3), (0.8, 0.5), (0.9, 0.8))]
    assert all(np.abs(t - class_color("cat")).max() <= 25 for t in tints), tints  # mask_targets: 1 is "cat"
    assert np.abs(px(shot, 0.6, 0.3) - px(bare, 0.6, 0.3)).max() > 20  # tinted at all
    for rx, ry in ((0.1, 0.3), (0.3, 0.5), (0.2, 0.8)):
        assert np.abs(px(shot, rx, ry) - px(bare, rx, ry)).max() <= 6
    # the semantic mask read from its PNG file, on the upright rotated photo: its bottom half only
    sx, sy, sw, sh = _img_rect(browser, f'.tile[data-id="{fourth}"] img')
    for rx, ry in ((0.3, 0.7), (0.7, 0.9)):
        assert np.abs(2 * px(shot, rx, ry) - px(bare, rx, ry) - class_color("dog")).max() <= 25
    for rx, ry in ((0.3, 0.2), (0.7, 0.4)):
        assert np.abs(px(shot, rx, ry) - px(bare, rx, ry)).max() <= 6
    # the heatmap: its 1s drawn red at alpha 200/255 over the photo, its 0s not drawn
    sx, sy, sw, sh = _img_rect(browser, f'.tile[data-id="{third}"] img')
    alpha = 200 / 255
    for rx, ry in ((0.5, 0.5), (0.9, 0.2)):
        expected = (1 - alpha) * px(bare, rx, ry) + alpha * np.array([255.0, 0.0, 0.0])
        assert np.abs(px(shot, rx, ry) - expected).max() <= 12, (px(shot, rx, ry), expected)
    for rx, ry in ((0.1, 0.5), (0.2, 0.8)):
        assert np.abs(px(shot, rx, ry) - px(bare, rx, ry)).max() <= 6


def test_sample_view_steps_with_the_keyboard(app: Any, photos: Any, browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    ids = photos.ids()
    _open(browser, app.url)
    wait_for(browser, _tiles_drawn, "every tile drawn")
    browser.find_element("css selector", f'.tile[data-id="{ids[0]}"]').click()
    modal = lambda d: d.execute_script(  # noqa: E731
        "const m = document.getElementById('modal'); return m.hidden ? null : [m.dataset.sampleId, m.dataset.drawn]")
    wait_for(browser, lambda d: modal(d) == [ids[0], "1"], "the first sample drawn")
    body = browser.find_element("css selector", "body")
    for expected in (ids[1], ids[2], ids[3]):
        body.send_keys(Keys.ARROW_RIGHT)
        wait_for(browser, lambda d, e=expected: modal(d) == [e, "1"], f"sample {expected}")
    # the full-resolution image, upright (EXIF orientation applied)
    natural = browser.execute_script("const i = document.getElementById('full'); return [i.naturalWidth, i.naturalHeight]")
    assert natural == [150, 220]
    body.send_keys(Keys.ARROW_RIGHT)  # the last: stays
    body.send_keys(Keys.ARROW_LEFT)
    wait_for(browser, lambda d: modal(d) == [ids[2], "1"], "back to the third sample")
    rows = browser.execute_script("return [...document.querySelectorAll('#modal-fields tr')].map(r => r.dataset.field)")
    assert {"filepath", "metadata", "scene"} <= set(rows)
    assert f'"sample":"{ids[2]}"' in urllib.parse.unquote(browser.current_url)
    body.send_keys(Keys.ESCAPE)
    wait_for(browser, lambda d: modal(d) is None, "the sample view closed")


# --------------------------------------------------------------------------- filters and counts


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Any, Dict[str, Any]]]:
    """12 small photos, each with 0-4 predictions of three classes and seeded confidences."""
    root = tmp_path_factory.mktemp("viewer-crowd")
    dataset = mz.Dataset.from_images(write_good_images(str(root), n=12), name="viewer-crowd", overwrite=True)
    rng = np.random.default_rng(7)
    truth: Dict[str, Any] = {}
    for i, sid in enumerate(dataset.ids()):
        objs = [(["cat", "dog", "bird"][(i + j) % 3], round(float(rng.uniform(0.05, 1.0)), 3)) for j in range(i % 5)]
        truth[sid] = objs
        if objs:
            dets = [Detection(label=c, confidence=s, bounding_box=[0.1 * k, 0.1, 0.2, 0.2]) for k, (c, s) in enumerate(objs)]
            dataset.set_values("predictions", {sid: Detections(detections=dets)})
    try:
        yield dataset, truth
    finally:
        dataset.delete()


def test_class_filter_and_confidence_range_show_the_counts_of_the_view(crowd: Any, browser: Any, tmp_path: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    dataset, truth = crowd
    handle = dataset.launch_app(cache_dir=str(tmp_path / "thumbs"), workers=1)
    try:
        _open(browser, handle.url)
        wait_for(browser, _tiles_drawn, "every tile drawn")
        assert browser.execute_script("return document.getElementById('count').dataset.count") == "12"
        # only cats, confidence in [0.3, 0.9]
        for cls in ("dog", "bird"):
            browser.find_element("css selector", f'.class-toggle[data-field="predictions"][data-class="{cls}"]').click()
            wait_for(browser, lambda d, c=cls: c not in _classes_in_url(d) and _tiles_drawn(d), f"{cls} filtered out")
        browser.find_element("css selector", '.conf-lo[data-field="predictions"]').send_keys("0.3\t")
        wait_for(browser, lambda d: "confidence" in urllib.parse.unquote(d.current_url) and _tiles_drawn(d), "the range applied")
        hi = browser.find_element("css selector", '.conf-hi[data-field="predictions"]')
        hi.send_keys(Keys.CONTROL, "a")
        hi.send_keys("0.9\t")
        wait_for(browser, lambda d: "[0.3,0.9]" in urllib.parse.unquote(d.current_url) and _tiles_drawn(d), "the upper bound applied")
        # the reference, by hand
        kept = {sid: [c for c, s in objs if c == "cat" and 0.3 <= s <= 0.9] for sid, objs in truth.items()}
        expected_samples = sorted(sid for sid, objs in kept.items() if objs)
        expected_cats = sum(len(v) for v in kept.values())
        assert expected_samples and expected_cats  # the seed gives some
        shown = browser.execute_script("return [...document.querySelectorAll('.tile')].map(t => t.dataset.id)")
        boxes = browser.execute_script(
            "return [...document.querySelectorAll('.tile')].reduce((n, t) => n + (JSON.parse(t.dataset.objects).predictions || 0), 0)")
        count = int(browser.execute_script("return document.getElementById('count').dataset.count"))
        facet = int(browser.execute_script(
            "return document.querySelector('.n[data-field=\"predictions\"][data-class=\"cat\"]').dataset.count"))
        assert sorted(shown) == expected_samples
        assert count == len(expected_samples)
        assert boxes == facet == expected_cats
        # the same view made with the public API counts the same
        view = dataset.match({"predictions.detections": {"$elemMatch": {
            "label": {"$in": ["cat"]}, "confidence": {"$gte": 0.3, "$lte": 0.9}}}})
        assert view.count() == count
        # the link shows the same view
        link = browser.current_url
        browser.get("about:blank")  # a fresh page load, not a same-document hash change
        browser.get(link)
        wait_for(browser, lambda d: d.execute_script("return document.body.dataset.ready === '1'") and _tiles_drawn(d),
                 "the link reopened")
        assert sorted(browser.execute_script("return [...document.querySelectorAll('.tile')].map(t => t.dataset.id)")) == expected_samples
    finally:
        handle.close()


def _classes_in_url(driver: Any) -> List[str]:
    state = json.loads(urllib.parse.unquote(driver.current_url).split("#state=", 1)[1])
    return state["filters"].get("predictions", {}).get("classes") or ["cat", "dog", "bird"]


# --------------------------------------------------------------------------- videos

FPS = 30
N_FRAMES = 60


def _frame_box(n: int) -> List[float]:
    return [0.05 + 0.01 * (n - 1), 0.3, 0.2, 0.3]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An H.264 MP4 (the browser plays it) and an MPEG-4 part 2 MKV (it cannot: frame by frame)."""
    root = tmp_path_factory.mktemp("viewer-video")
    paths = [
        write_video(str(root / "astronaut.mp4"), pan_zoom("astronaut", N_FRAMES, size=(320, 240)), "libx264", FPS),
        write_video(str(root / "coffee.mkv"), pan_zoom("coffee", N_FRAMES, size=(320, 240)), "mpeg4", FPS),
    ]
    dataset = mz.Dataset.from_videos(paths, name="viewer-video", overwrite=True)
    for sample in dataset:
        for n in range(1, N_FRAMES + 1):
            sample.frames[n]["cars"] = Detections(detections=[Detection(label="car", bounding_box=_frame_box(n))])
    try:
        yield dataset
    finally:
        dataset.delete()


@pytest.mark.parametrize("codec, mode", [("h264", "video"), ("mpeg4", "frames")])
def test_video_player_draws_each_frames_boxes_in_sync(clip: Any, browser: Any, tmp_path: Any, codec: str, mode: str) -> None:
    from selenium.webdriver.common.keys import Keys

    sample = [s for s in clip if s.metadata.codec == codec][0]
    handle = clip.launch_app(cache_dir=str(tmp_path / "thumbs"), workers=1)
    try:
        _open(browser, handle.url)
        wait_for(browser, _tiles_drawn, "the videos' tiles")
        browser.find_element("css selector", f'.tile[data-id="{sample.id}"]').click()
        frame = lambda d: d.execute_script(  # noqa: E731
            "const f = document.getElementById('frame'); return [+f.dataset.frame, f.dataset.labelsFrame]")
        wait_for(browser, lambda d: frame(d)[0] >= 1 and frame(d)[1] != "", "the first frame")
        browser.find_element("css selector", "body").send_keys(" ")  # play
        wait_for(browser, lambda d: frame(d)[0] >= 10, "playback past frame 10")
        box = browser.find_element("css selector", "#frame-input")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("40\n")
        wait_for(browser, lambda d: frame(d) == [40, "40"] and d.execute_script(
            "const v = document.getElementById('player');"
            "return document.getElementById('modal').dataset.mode === 'frames' || (v.paused && !v.seeking)"),
            "frame 40 shown, paused")
        assert browser.execute_script("return document.getElementById('modal').dataset.mode") == mode
        wait_for(browser, lambda d: d.execute_script("return document.getElementById('modal').dataset.drawn") == "1",
                 "frame 40's labels drawn")
        shot = screenshot(browser)
        vx, vy, vw, vh = _img_rect(browser, "#player" if mode == "video" else "#full")
        assert (vw, vh) == (320, 240)
        objects = json.loads(browser.execute_script("return document.getElementById('modal').dataset.objects"))
        assert objects.get("frames.cars") == 1
        car = class_color("car")
        at = lambda rx, ry: (vx + rx * vw, vy + ry * vh)  # noqa: E731
        x, y, bw, bh = _frame_box(40)
        for px, py in (at(x, y + bh / 2), at(x + bw, y + bh / 2), at(x + bw / 2, y + bh)):
            assert near(shot, px, py, car), (px, py)
        x1 = _frame_box(1)[0]  # where frame 1's box was: nothing drawn there now
        assert not near(shot, *at(x1, y + bh / 2), car, radius=1)
        # one frame on with the keyboard: the box moves with it
        browser.find_element("css selector", "body").click()
        browser.find_element("css selector", "body").send_keys(".")
        wait_for(browser, lambda d: frame(d) == [41, "41"] and d.execute_script(
            "return document.getElementById('modal').dataset.drawn") == "1", "frame 41")
        shot = screenshot(browser)
        x41 = _frame_box(41)[0]
        assert near(shot, *at(x41, y + bh / 2), car)
        assert not near(shot, *at(x, y + bh / 2), car, radius=0)  # frame 40's edge: the box moved on (3 px)
    finally:
        handle.close()


# --------------------------------------------------------------------------- pages, sort, evaluation (HTTP)


def _client(handle: Any) -> Tuple[httpx.Client, str]:
    page = httpx.get(handle.url, timeout=30)
    return httpx.Client(cookies=page.cookies, timeout=60), handle.url.split("/?")[0]


def _all_pages(client: httpx.Client, base: str, state: Dict[str, Any], limit: int) -> List[str]:
    ids: List[str] = []
    after = None
    while True:
        params = {"state": json.dumps(state), "limit": str(limit)}
        if after:
            params["after"] = after
        body = client.get(base + "/api/samples", params=params).json()
        ids += [s["id"] for s in body["samples"]]
        after = body["next"]
        if not after:
            return ids


def test_pages_by_keyset_cover_every_sample_once_in_sort_order(crowd: Any, tmp_path: Any) -> None:
    dataset, truth = crowd
    ids = dataset.ids()
    # scores with ties and gaps (no score: sorted first, as MongoDB sorts null)
    scores = {sid: (None if i % 5 == 0 else float(i % 3)) for i, sid in enumerate(ids)}
    dataset.set_values("score", scores)
    handle = dataset.launch_app(cache_dir=str(tmp_path / "thumbs"), workers=1)
    try:
        client, base = _client(handle)
        assert _all_pages(client, base, {}, 5) == ids
        key = lambda sid: ((0, 0.0) if scores[sid] is None else (1, scores[sid]), sid)  # noqa: E731
        for reverse in (False, True):
            expected = sorted(ids, key=key, reverse=reverse)
            state = {"sort": {"field": "score", "reverse": reverse}}
            assert _all_pages(client, base, state, 4) == expected
            # the sample view steps through the same order
            for a, b in zip(expected, expected[1:]):
                one = client.get(base + f"/api/sample/{a}", params={"state": json.dumps(state)}).json()
                assert one["next"] == b
            assert client.get(base + f"/api/sample/{expected[0]}", params={"state": json.dumps(state)}).json()["prev"] is None
        # samples without the field, and with it
        without = {"filters": {"predictions": {"exists": False}}}
        assert _all_pages(client, base, without, 5) == [sid for sid in ids if not truth[sid]]
        assert client.get(base + "/api/facets", params={"state": json.dumps(without)}).json()["count"] == \
            sum(1 for sid in ids if not truth[sid])
    finally:
        handle.close()
        dataset.set_values("score", {sid: None for sid in ids})


def test_an_evaluations_tp_fp_fn_select_samples_and_objects(crowd: Any, tmp_path: Any) -> None:
    dataset, truth = crowd
    ids = dataset.ids()
    gts = {}
    for sid, objs in truth.items():  # ground truth: the predictions' boxes, the first one's class changed
        dets = [Detection(label=("dog" if k == 0 and c == "cat" else c), bounding_box=[0.1 * k, 0.1, 0.2, 0.2])
                for k, (c, _) in enumerate(objs)]
        gts[sid] = Detections(detections=dets)
    dataset.set_values("ground_truth", gts)
    dataset.evaluate_detections("predictions", "ground_truth", eval_key="ev")
    handle = dataset.launch_app(cache_dir=str(tmp_path / "thumbs"), workers=1)
    try:
        client, base = _client(handle)
        assert client.get(base + "/api/info").json()["evaluations"]["ev"]["kind"] == "detection"
        for kind in ("tp", "fp", "fn"):
            state = {"eval": {"key": "ev", "kind": kind}}
            # the reference, by hand: which objects have which result
            expected = {}
            for sid, objs in truth.items():
                n_wrong = 1 if objs and objs[0][0] == "cat" else 0
                n = {"tp": len(objs) - n_wrong, "fp": n_wrong, "fn": n_wrong}[kind]
                if n:
                    expected[sid] = n
            pages = []
            after = None
            while True:
                params = {"state": json.dumps(state)}
                if after:
                    params["after"] = after
                body = client.get(base + "/api/samples", params=params).json()
                pages += body["samples"]
                after = body["next"]
                if not after:
                    break
            assert [s["id"] for s in pages] == [sid for sid in ids if sid in expected]
            field = "ground_truth" if kind == "fn" else "predictions"
            for s in pages:
                objs = s["labels"][field]["detections"]
                assert len(objs) == expected[s["id"]] and all(o["attributes"]["ev"] == kind for o in objs)
            assert client.get(base + "/api/facets", params={"state": json.dumps(state)}).json()["count"] == \
                dataset.match_eval("ev", kind).count() == len(expected)
    finally:
        handle.close()
        dataset.delete_evaluation("ev")
        dataset.set_values("ground_truth", {sid: None for sid in ids})

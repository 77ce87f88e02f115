"""The training report and the evaluation page, opened in a real browser: headless Chromium loads each page from
a file and the test asks it, over the DevTools protocol, which requests the page made and what it rendered.

A page passes when it loads without a request beyond itself and its ``data:`` images (every host name resolves
to nothing, and each request the page makes is recorded, so one to another host fails even where it would be
blocked), with no console error or policy violation, and its main elements are there as rendered: the loss,
learning-rate and speed charts with their axis titles, tick values and lines; the run and checkpoint tables in
words, not Python values; on the evaluation page, the per-video table whose objects link to overlays that exist,
with decoded images, and overlays that link back to their video.

Without Chromium the browser tests skip saying so (``.ci/setup`` installs Debian's ``chromium`` where apt-get is
available); in CI that skip fails the run (``.ci/run``). The link check without a browser always runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from savflow.launch import report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import report_data  # noqa: E402

CHROMIUM_MISSING = ("chromium not found on PATH: cannot open the report pages in a browser (install Debian's "
                    "`chromium` package; .ci/setup does where apt-get is available)")
TIMEOUT_S = 60


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip(CHROMIUM_MISSING)
    return path


class Chromium:
    """Headless Chromium driven over ``--remote-debugging-pipe`` (DevTools messages, NUL-separated JSON on fds
    3 and 4): only the page's own requests are seen, not the browser's background ones."""

    def __init__(self, binary: str, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds_3_and_4() -> None:  # in the child, before exec: its ends of the pipes as fd 3 and fd 4
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.log = workdir / "chromium.log"
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(
                [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", f"--user-data-dir={workdir / 'profile'}",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, pass_fds=(3, 4),
                preexec_fn=fds_3_and_4)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (OSError, TimeoutError, EOFError, RuntimeError):
            pass
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from chromium (its log: {self.log})")
            if select.select([self._from_browser], [], [], left)[0]:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise EOFError(f"chromium closed the DevTools pipe (its log: {self.log})")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = TIMEOUT_S) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def _wait_for(self, method: str, session: str, timeout: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        seen = lambda m: m.get("method") == method and m.get("sessionId") == session  # noqa: E731
        while not any(seen(m) for m in self.events):
            self.events.append(self._receive(deadline))

    def open(self, page: Path, script: str) -> "PageLoad":
        """Load ``page`` in a new tab, wait for its load event, then evaluate ``script`` (an expression whose
        value comes back as JSON) in it."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        url = page.resolve().as_uri()
        self.call("Page.navigate", {"url": url}, session=session)
        self._wait_for("Page.loadEventFired", session)
        value = self.call("Runtime.evaluate", {"expression": script, "returnByValue": True}, session=session)
        if "exceptionDetails" in value:
            raise AssertionError(f"the check script failed in the page: {value['exceptionDetails']}")
        mine = [m for m in self.events if m.get("sessionId") == session]
        return PageLoad(
            url=url, value=value["result"]["value"],
            requests=[m["params"]["request"]["url"] for m in mine if m.get("method") == "Network.requestWillBeSent"],
            problems=[m["params"] for m in mine
                      if m.get("method") == "Runtime.exceptionThrown"
                      or m.get("method") == "Log.entryAdded" and m["params"]["entry"]["level"] == "error"
                      or m.get("method") == "Runtime.consoleAPICalled" and m["params"]["type"] == "error"
                      or m.get("method") == "Network.loadingFailed"])


class PageLoad:
    def __init__(self, *, url: str, value: Any, requests: list[str], problems: list[dict]) -> None:
        self.url, self.value, self.requests, self.problems = url, value, requests, problems

    def assert_self_contained(self) -> None:
        """The page asked for nothing but itself and inline ``data:`` resources, and nothing went wrong."""
        others = [u for u in self.requests if u != self.url and not u.startswith("data:")]
        assert self.url in self.requests, self.requests
        assert others == [], f"the page requested other resources: {others}"
        assert self.problems == [], f"console errors, policy violations or failed loads: {self.problems}"


@pytest.fixture(scope="module")
def chromium(tmp_path_factory) -> Chromium:
    binary = _chromium()
    with Chromium(binary, tmp_path_factory.mktemp("chromium")) as browser:
        yield browser


# ---- the training report ------------------------------------------------------------------------------------------

TRAIN_SCRIPT = """(() => {
  const all = (root, s) => Array.from(root.querySelectorAll(s));
  return {
    title: document.title,
    charts: all(document, 'figure.chart').map(f => ({
      id: f.id,
      title: f.querySelector('svg > title') ? f.querySelector('svg > title').textContent : null,
      x_label: f.querySelector('.axis-label.x').textContent,
      y_label: f.querySelector('.axis-label.y').textContent,
      x_ticks: all(f, 'text.tick.x').map(t => t.textContent),
      y_ticks: all(f, 'text.tick.y').map(t => t.textContent),
      series: all(f, 'polyline.series').map(p => ({
        kind: p.classList.contains('smoothed') ? 'smoothed' : 'raw', points: p.points.numberOfItems,
        width: p.getBBox().width, height: p.getBBox().height})),
      shown: f.querySelector('svg').getBoundingClientRect().width,
      caption: f.querySelector('figcaption').textContent})),
    run: Object.fromEntries(all(document, '#run tr').map(r => [r.cells[0].textContent, r.cells[1].textContent])),
    checkpoints: all(document, '#checkpoints tr').slice(1).map(r => Array.from(r.cells).map(c => c.textContent)),
    text: document.body.innerText,
  };
})()"""


@pytest.fixture(scope="module")
def training_page(tmp_path_factory) -> tuple[Path, dict]:
    """The page of a stand-in run resumed at step 80 of 120, on a GPU of 37 GiB peak."""
    root = tmp_path_factory.mktemp("training")
    exp = str(root / "exp")
    first = report_data.trainer_metrics(exp, steps=100)
    (root / "exp").mkdir(exist_ok=True)
    (root / "exp" / "train_metrics.json").write_text(json.dumps(first))
    resume = {"kind": "resume", "checkpoint": f"{exp}/checkpoints/000000080/checkpoint.pt", "step": 80, "epoch": 2}
    metrics = report_data.trainer_metrics(exp, steps=40, start_step=80, resume=resume)
    metrics.update(gpu_name="NVIDIA H200", gpu_max_memory_bytes=37 * 2**30)  # what a CUDA run adds
    page = root / report.REPORT_HTML
    page.write_text(report.training_html(metrics, report_data.checkpoint_list(exp, [80, 120])))
    return page, metrics


def _number(label: str) -> float:
    return float(label.replace(",", ""))


def test_training_report_in_chromium(chromium: Chromium, training_page) -> None:
    page, metrics = training_page
    load = chromium.open(page, TRAIN_SCRIPT)
    load.assert_self_contained()
    got = load.value
    assert got["title"] == "Training report: sam2.1_tiny128_sav_finetune"

    charts = {c["id"]: c for c in got["charts"]}
    loss_ids = ["loss-core-loss", "loss-loss-mask", "loss-loss-dice", "loss-loss-iou", "loss-loss-class"]
    assert [c for c in charts if c.startswith("loss-")] == loss_ids
    assert sorted(c for c in charts if c.startswith("lr-")) == ["lr-group-0", "lr-group-1"]
    assert "seconds-per-step" in charts
    for chart in charts.values():
        assert chart["x_label"] == "step" and chart["shown"] > 0, chart["id"]
        assert len(chart["x_ticks"]) >= 3 and len(chart["y_ticks"]) >= 3, chart["id"]
        xs = [_number(t) for t in chart["x_ticks"]]
        ys = [_number(t) for t in chart["y_ticks"]]
        assert xs == sorted(xs) and ys == sorted(ys) and len(set(chart["y_ticks"])) == len(ys), chart
        assert xs[0] <= 1 and xs[-1] >= 120, chart["id"]  # the whole run, the resumed history included
        raw = [s for s in chart["series"] if s["kind"] == "raw"]
        assert len(raw) == 1 and raw[0]["width"] > 100 and raw[0]["height"] > 10, chart
    for chart_id in loss_ids:
        chart = charts[chart_id]
        assert chart["y_label"] == "loss"
        assert [s["kind"] for s in chart["series"]] == ["raw", "smoothed"]
        term = chart_id.removeprefix("loss-").replace("-", "_")
        assert all(s["points"] == len(metrics["loss_terms"][term]) == 120 for s in chart["series"]), chart
    assert "dice loss" in charts["loss-loss-dice"]["title"] and "IoU loss" in charts["loss-loss-iou"]["title"]
    assert charts["lr-group-0"]["y_label"] == "learning rate"
    assert "image_encoder" in charts["lr-group-0"]["caption"]
    assert "sam_mask_decoder" in charts["lr-group-1"]["caption"]

    run = got["run"]
    assert run["config"] == "sam2.1_tiny128_sav_finetune"
    assert run["world size"] == "2 process(es)"
    assert run["overrides"] == "scratch.num_frames=3, dataset.multiplier=2"
    assert run["steps"] == "120 (40 in this run)" and run["epochs (trainer epochs)"] == "3 of 3"
    assert run["resume"].startswith("resumed from the experiment's newest checkpoint, step 80 (epoch 2): ")
    assert run["device"] == "cpu (NVIDIA H200)"
    assert run["peak GPU memory allocated (rank 0)"] == "37.00 GiB"
    assert run["seconds per step (median)"] == "0.75"
    assert run["samples (clips) per second, all processes"] == "5.33"  # 2 processes x 2 clips / 0.75 s
    assert [row[:2] for row in got["checkpoints"]] == [["80", "2"], ["120 (latest)", "3"]]
    assert got["checkpoints"][1][2].endswith("/checkpoints/000000120/model.pt")
    for python_value in ("None", "{'", "': ", "[[", "True", "False"):
        assert python_value not in got["text"], python_value


# ---- the evaluation page ------------------------------------------------------------------------------------------

EVAL_SCRIPT = """(() => {
  const all = (root, s) => Array.from(root.querySelectorAll(s));
  const rows = all(document, '#per-video tr').slice(1);
  const links = all(document, '#per-video a[href^="#"]').map(a => {
    a.click();  // a same-page link: the browser makes its target the :target
    const target = document.querySelector(':target');
    return {href: a.getAttribute('href'), text: a.textContent, target: target ? target.id : null,
            target_heading: target && target.querySelector('h3') ? target.querySelector('h3').textContent : null};
  });
  return {
    videos: rows.map(r => ({id: r.id, video: r.cells[0].textContent, objects: r.cells[4].textContent})),
    links: links,
    overlays: all(document, 'section.overlay').map(s => ({
      id: s.id,
      back: s.querySelector('h3 a').getAttribute('href'),
      back_exists: document.getElementById(s.querySelector('h3 a').getAttribute('href').slice(1)) !== null,
      images: all(s, 'img').map(i => ({complete: i.complete, width: i.naturalWidth, data: i.src.startsWith('data:image/jpeg')}))})),
  };
})()"""


@pytest.fixture(scope="module")
def evaluation_page(tmp_path_factory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("evaluation")
    text, result = report_data.evaluation_page(root)
    page = root / "report.html"
    page.write_text(text)
    return page, result


def test_evaluation_page_in_chromium(chromium: Chromium, evaluation_page) -> None:
    page, result = evaluation_page
    load = chromium.open(page, EVAL_SCRIPT)
    load.assert_self_contained()
    got = load.value
    assert [v["video"] for v in got["videos"]] == list(result.per_video())
    # the 2 worst and the 2 best of 6 objects have overlays: those 4 are linked from the table, and each link
    # lands on the overlay of its own object
    assert len(result.objects) == 6 and len(got["overlays"]) == 4 and len(got["links"]) == 4
    assert sorted(link["target"] for link in got["links"]) == sorted(o["id"] for o in got["overlays"])
    by_row = {v["id"]: v for v in got["videos"]}
    for link in got["links"]:
        assert link["href"] == "#" + link["target"]
        obj = link["text"].split(" ")[0]
        assert f"object {obj}:" in link["target_heading"], link
    for overlay in got["overlays"]:
        assert overlay["back_exists"] and overlay["back"][1:] in by_row, overlay
        assert overlay["images"] and all(i["complete"] and i["width"] > 0 and i["data"] for i in overlay["images"])


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.fragments: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(values["id"])
        for name in ("href", "src"):
            ref = values.get(name) or ""
            if ref.startswith("#"):
                self.fragments.append(ref[1:])
            elif ref and not ref.startswith("data:"):
                self.external.append(ref)


def test_page_links_resolve_without_a_browser(evaluation_page, training_page) -> None:
    """What can be checked without Chromium: every same-page link has its target, ids are unique, and neither
    page refers to any other resource."""
    for page in (evaluation_page[0], training_page[0]):
        links = _Links()
        links.feed(page.read_text())
        assert len(links.ids) == len(set(links.ids)), page
        assert set(links.fragments) <= set(links.ids), page
        assert links.external == [], page
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.read_text()), page
    links = _Links()
    links.feed(evaluation_page[0].read_text())
    assert len([f for f in links.fragments if f.startswith("obj-")]) == 4  # the objects with an overlay
    assert {f for f in links.fragments if f.startswith("video-")} <= set(links.ids)

"""A run's HTML report, opened in headless Chromium: the plots are loaded images, the tables and examples are there.

Chromium is Debian's ``chromium`` package (.ci/run installs it). The report is loaded from a copy of index.html
with a script that writes each image's natural size into the page, and the DOM is read back with --dump-dom.
"""

import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

import finetuner
from conftest import banking77_slice
from finetuner.report import PLOTS, write_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]
MEASURE = """<script>
window.addEventListener("load", () => {
  const sizes = {};
  for (const img of document.images) {
    if (img.id) sizes[img.id] = {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
  }
  const out = document.createElement("pre");
  out.id = "image-sizes";
  out.textContent = JSON.stringify(sizes);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        message = "Chromium is needed: apt-get install -y chromium (.ci/run installs it)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    return path


def dump_dom(page: Path, profile: Path) -> str:
    command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Tables(HTMLParser):
    """The text of every cell of the table with id ``table_id``, row by row."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.inside, self.rows = table_id, False, []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data.strip()


def table(dom: str, table_id: str) -> list[list[str]]:
    parser = Tables(table_id)
    parser.feed(dom)
    return parser.rows


@pytest.fixture(scope="module")
def finished_run(flow, data_dir):
    train = banking77_slice(data_dir, "train", classes=4, per_class=8)
    evaluation = banking77_slice(data_dir, "test", classes=4, per_class=5)
    run = finetuner.fit(
        train_data=train,
        eval_data=evaluation,
        batch_size=16,
        epochs=2,
        max_steps=4,
        eval_every_steps=2,
        eval_ks=[1, 5],
        log_every=1,
        device="cpu",
        precision="fp32",
        run_name="report in a browser",
        quiet=True,
    )
    assert run.wait(interval_s=0.3) == "FINISHED", run.logs()
    return run, evaluation


@pytest.mark.slow
def test_the_report_shows_plots_metrics_and_examples_in_chromium(finished_run, tmp_path):
    run, evaluation = finished_run
    index = write_report(run, tmp_path / "report", eval_data=evaluation, examples=3, example_k=4)
    assert index == tmp_path / "report" / "index.html"
    for file, _ in PLOTS.values():
        with Image.open(index.parent / file) as image:
            assert image.format == "PNG" and min(image.size) > 100

    page = index.with_name("measured.html")
    page.write_text(index.read_text("utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = dump_dom(page, tmp_path / "chromium-profile")

    sizes = json.loads(re.search(r'<pre id="image-sizes">(.*?)</pre>', dom, flags=re.S)[1])
    assert set(sizes) == {f"plot-{key}" for key in PLOTS}
    for name, size in sizes.items():
        assert size["complete"] and size["width"] > 100 and size["height"] > 100, (name, size)

    metrics = run.metrics()
    assert list(metrics) == ["before", "step 2", "step 4", "after"]
    rows = table(dom, "metric-table")
    assert rows[0] == ["metric", "before", "step 2", "step 4", "after", "change"]
    by_name = {row[0]: row[1:] for row in rows[1:]}
    before, after = metrics["before"]["precision@1"], metrics["after"]["precision@1"]
    assert by_name["precision@1"] == [
        f"{before:.4f}",
        f"{metrics['step 2']['precision@1']:.4f}",
        f"{metrics['step 4']['precision@1']:.4f}",
        f"{after:.4f}",
        f"{after - before:+.4f}",
    ]
    assert by_name["queries"][0] == "20"

    texts = {text for text, _ in evaluation}
    examples = re.findall(r'<div class="example">(.*?)</table></div>', dom, flags=re.S)
    assert len(examples) == 3
    for example in examples:
        results = re.findall(r'<tr class="result[^"]*"><td>(\d+)</td><td>(.*?)</td>', example, flags=re.S)
        assert [int(rank) for rank, _ in results] == [1, 2, 3, 4]
        assert all(html.unescape(content) in texts for _, content in results)
    summary = {row[0]: row[1] for row in table(dom, "summary")}
    assert summary["status"] == "FINISHED" and summary["name"] == "report in a browser"


@pytest.mark.slow
def test_the_report_without_eval_data_says_how_to_get_examples(finished_run, tmp_path, capsys):
    run, evaluation = finished_run
    index = write_report(run, tmp_path / "report")
    text = index.read_text("utf-8")
    assert "pass evaluation data to see sample queries" in text and 'id="metric-table"' in text
    capsys.readouterr()
    run.display_metrics()
    out = capsys.readouterr().out
    assert "precision@1" in out and "change" in out

    tables = run.display_examples(evaluation, examples=2, k=3)
    out = capsys.readouterr().out
    assert len(tables) == 2 and out.count("query: ") == 2
    assert all(table.row_count == 3 for table in tables)
    texts = {text for text, _ in evaluation}
    assert sum(text in out for text in texts) >= 2

"""The README's pictures of a night in the Airflow UI: its grid and its graph, from a real run.

    python -m localdev.grid_screenshot [--out docs]     (make grid-screenshot installs its needs)

Starts a moto server and Azurite, lands the bundled sample (`localdev/sample/`) as the photos of
the latest night, starts real Airflow services (`airflow standalone`, tests/airflow_services.py)
and unpauses the DAG: the scheduler runs that night on platform `local`. Once it has succeeded,
Debian's Chromium (headless, driven by playwright; no browser download) opens the run in the UI
with every task group expanded and saves `grid.png` and `graph.png`. A run that does not succeed,
or a page that shows no grid, stops the script with a message and a non-zero exit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from localdev import lake
from localdev.emulators import REPO, local_cloud
from localdev.run_pipeline import BUNDLED_SAMPLE, airflow_env, find_weights
from tests.airflow_services import AirflowServices, Run, airflow_standalone

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: `apt-get install -y chromium`
DAG_ID = "fruits_pipeline"
# Read at a README's width; the grid's rows all fit in the first's height.
GRID_VIEWPORT, GRAPH_VIEWPORT = {"width": 1400, "height": 1000}, {"width": 1400, "height": 520}
# The tasks whose state the picture must show: one group ran, the other two were skipped.
EXPECTED = {
    "local.run_classify_locally": "success",
    "emr.create_emr_cluster": "skipped",
    "databricks.define_databricks_job": "skipped",
    "publish.verify_and_publish": "success",
}
TASKS = [task_id.split(".")[1] for task_id in EXPECTED]  # the grid shows them by their names
GROUPS = ["setup", "emr", "local", "databricks", "publish"]


def latest_night(now: datetime) -> str:
    """The night unpausing makes the scheduler run (catchup off): the day before the last 02:00
    UTC that has passed."""
    return ((now - timedelta(hours=2)).date() - timedelta(days=1)).isoformat()


@contextmanager
def night_under_airflow(workdir: Path, images: Path) -> Iterator[tuple[AirflowServices, Run]]:
    """The latest night of `images`, run by the scheduler of real services; they are stopped
    (every process, by pid) when the block ends."""
    night = latest_night(datetime.now(timezone.utc))
    with local_cloud(workdir) as endpoints:
        s3 = lake.s3_client(endpoints)
        lake.create_lake(s3)
        landed = lake.land_photos(s3, images, night)
        weights_uri, sha256 = lake.upload_weights(s3, find_weights(None))
        print(f"{landed} files of {images} landed under landing/{night}/")
        env = airflow_env(endpoints, workdir / "airflow-home", workdir / "scratch")
        env |= lake.variable_env(lake.fruits_config(weights_uri, sha256))
        with airflow_standalone(workdir / "airflow-home", env, DAG_ID) as services:
            print(f"Airflow at {services.api_url} (log: {services.log_path}); running {night}")
            services.unpause()
            run_id = services.wait_for_new_run("scheduled", known=set())
            run = services.wait_for_run(run_id, timeout=1800)  # a loaded laptop: ~6 min
            if not (run.logical_date or "").startswith(night):  # 02:00 UTC passed meanwhile
                raise SystemExit(f"The scheduler ran {run.logical_date}, not {night}: run again")
            if run.state != "success":
                raise SystemExit(f"The night did not succeed:\n{services.explain(run)}")
            wrong = {t: run.tasks.get(t) for t, s in EXPECTED.items() if run.tasks.get(t) != s}
            if wrong:
                raise SystemExit(f"Unexpected task states {wrong} (expected {EXPECTED})")
            yield services, run
        if services.leftovers:
            raise SystemExit(f"Airflow processes left running: {services.leftovers}")


def take_screenshots(services: AirflowServices, run: Run, out: Path) -> list[Path]:
    """The run's grid, every task group expanded (the tasks' states), then its graph with the
    groups collapsed (the pipeline's shape: the expanded one is too wide to read at this size)."""
    url = f"{services.api_url}/dags/{DAG_ID}/runs/{urllib.parse.quote(run.run_id, safe='')}"
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # Never `playwright install`: Debian's Chromium is the browser.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport=GRID_VIEWPORT)
            page.goto(url)
            show(page, "Show Grid (Press g)", "Expand all task groups", TASKS)
            page.screenshot(path=str(out / "grid.png"))
            show(page, "Show Graph (Press g)", "Collapse all task groups", GROUPS)
            page.get_by_role("button", name="Collapse Details Panel").click()
            page.set_viewport_size(GRAPH_VIEWPORT)
            page.get_by_role("button", name="Fit View").click()
            page.wait_for_timeout(1000)  # the zoom is animated
            page.screenshot(path=str(out / "graph.png"))
        finally:
            browser.close()
    return [out / "grid.png", out / "graph.png"]


def show(page, view: str, toggle: str, labels: list[str]) -> None:
    """Switch to a view, expand or collapse every group; stop if something does not show."""
    missing = f"{view!r} button"
    try:
        page.get_by_role("button", name=view).click(timeout=60_000)
        missing = f"{toggle!r} button"
        button = page.get_by_role("button", name=toggle)
        button.wait_for(timeout=30_000)
        if button.is_enabled():  # disabled when every group already is so
            button.click()
        for label in labels:
            missing = f"{label!r} in its {view!r} view"
            page.get_by_text(label, exact=True).first.wait_for(timeout=30_000)
    except PlaywrightTimeout:
        raise SystemExit(f"{page.url} shows no {missing}: not the run's grid") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--images", type=Path, default=BUNDLED_SAMPLE)
    parser.add_argument("--workdir", type=Path, default=REPO / ".local-runs" / "grid-screenshot")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not CHROMIUM.is_file():
        raise SystemExit(f"{CHROMIUM} is missing: `apt-get install -y chromium` (or make)")
    shutil.rmtree(args.workdir, ignore_errors=True)  # a fresh lake, Azurite and database
    with night_under_airflow(args.workdir, args.images) as (services, run):
        saved = take_screenshots(services, run, args.out)
    print("Saved " + ", ".join(str(p) for p in saved), file=sys.stderr)


if __name__ == "__main__":
    main()

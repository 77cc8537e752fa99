"""The lab in a real browser: `make lab` serves notebook 08, headless Chromium runs it and plays with the widget.

What a learner does, end to end: the project's own ``make lab`` starts JupyterLab (on 127.0.0.1, a free port,
a random token, no browser of its own); Chromium (Debian's /usr/bin/chromium, driven by Playwright) opens
08_loss_playground.ipynb, clears the stored outputs (Edit > Clear Outputs of All Cells) and runs every cell
(Run > Run All Cells), then uses the loss lab: moves the first panel's margin slider with the keyboard and
presses "take N gradient steps". It asserts that every code cell ran (an execution count, the kernel idle),
that no cell shows an error (a traceback; stderr such as warnings is not an error), that the lab rendered
(its button, 6 sliders, a figure per panel), that the margin changes the first panel's figure and status
line only, and that the steps change both figures.

Nothing is written into the repository's notebooks: the lab serves a copy of notebook 08 from a temporary
folder (``make lab LAB_ROOT=...``) with autosave off, in a clean temporary Jupyter profile (config, data,
runtime and IPython folders) whose settings also turn off news, update checks and windowed rendering and
start the notebook's kernel without asking. Screenshots go to build/browser/ (ran.png, before.png,
after-slider.png, after.png, page.png; failure-<step>.png and .html when a step fails), the server's log to
build/browser/lab.log.

Skipped, with the reason, when Chromium (/usr/bin/chromium, or LABKIT_CHROMIUM) or the playwright package is
missing; with LABKIT_REQUIRE_BROWSER=1, which .ci/run sets after installing both, that is a failure instead.
Run it alone with ``make test-browser`` or ``.venv/bin/python -m pytest tests/test_browser.py -s``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "08_loss_playground.ipynb"
SHOTS = ROOT / "build" / "browser"
CHROMIUM = Path(os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--no-proxy-server",  # the lab is on 127.0.0.1: no proxy from the environment in between
                 "--disable-dev-shm-usage"]  # containers' small /dev/shm would crash tabs
VENV = Path(sys.prefix)  # the environment running the tests serves the lab: make lab VENV=<it>
STEPS_LABEL = "take N gradient steps"  # labkit.course.loss_lab.LossLab.take_steps

# Timeouts (seconds), generous for a busy 2-core machine; the whole test takes well under a minute there.
SERVER_UP, PAGE_LOAD, RUN_ALL, WIDGET_UPDATE = 120, 90, 240, 60

REQUIRED = os.environ.get("LABKIT_REQUIRE_BROWSER") == "1"  # .ci/run sets it: in CI a missing browser is a failure


def missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"LABKIT_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if not os.access(CHROMIUM, os.X_OK):
    missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LABKIT_CHROMIUM); .ci/run installs it")
try:
    from playwright import sync_api
except ImportError:
    missing("playwright is not installed (pip install -r requirements-dev.txt; not `playwright install`)")
if not (VENV / "bin" / "jupyter").exists():
    missing(f"no {VENV}/bin/jupyter: run the tests with the project's virtual environment")

pytestmark = pytest.mark.slow

# JupyterLab user settings of the throw-away profile: no autosave (the notebook is never written), no news
# or update checks (no network, no toasts over the page), every cell in the DOM (no windowing), the notebook's
# kernel started without the "Select Kernel" dialog.
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False,
                                                    "doNotDisturbMode": True},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
}


def say(message: str, started: float) -> None:
    print(f"[browser test {time.monotonic() - started:6.1f} s] {message}", flush=True)


# ----------------------------------------------------------------------------------------------
# The server: make lab
# ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url: str, token: str, method: str = "GET", timeout: float = 5.0):
    """One HTTP request to the lab, without any proxy from the environment; returns the decoded JSON."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    call = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with opener.open(call, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def processes_mentioning(text: str) -> list[int]:
    """Ids of the processes whose command line contains ``text`` (here: the kernels of our own runtime folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def serve(notebooks: list[Path], home: Path, log_path: Path):
    """`make lab` serving copies of ``notebooks`` from ``home``, in a temporary Jupyter profile there; stopped
    (the server asked to shut down, then its process group ended) when the block ends."""
    started = time.monotonic()
    served = home / "notebooks"
    served.mkdir(parents=True)
    for notebook in notebooks:
        shutil.copy(notebook, served / notebook.name)
    for plugin, values in SETTINGS.items():
        path = home / "config" / "lab" / "user-settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    runtime = home / "runtime"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(runtime), IPYTHONDIR=str(home / "ipython"),
               LABKIT_FAST="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # the kernel inherits these
    for name in ("MPLBACKEND",  # conftest's Agg would hide the notebook's inline figures
                 "MAKEFLAGS", "MFLAGS", "JUPYTER_PATH", "JUPYTER_PREFER_ENV_PATH"):
        env.pop(name, None)
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    lab_args = ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: the notebook's model, the kernel's states
    # -o: the environment running this test is already installed; never reinstall it from inside a test.
    command = ["make", "--no-print-directory", "-o", f"{VENV}/.labkit-installed", "lab", f"VENV={VENV}",
               f"LAB_ROOT={served}", "LAB_ARGS=" + " ".join(lab_args)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_UP
        while True:
            if server.poll() is not None:
                pytest.fail(f"`make lab` exited ({server.returncode}) before answering; {log_path}:\n"
                            f"{log_tail(log_path)}")
            with contextlib.suppress(OSError, ValueError):
                request(f"{url}/api/status", token, timeout=2)
                break
            if time.monotonic() > deadline:
                pytest.fail(f"`make lab` did not answer on {url} within {SERVER_UP} s; {log_path}:\n"
                            f"{log_tail(log_path)}")
            time.sleep(0.25)
        say(f"make lab answers on {url} (serving {served})", started)
        yield {"url": url, "token": token, "served": served, "log": log_path}
    finally:
        stop(server, url, token, runtime)
        say(f"make lab stopped (log: {log_path})", started)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    for stale in SHOTS.glob("failure-*"):  # evidence of an earlier run's failure
        stale.unlink()
    with serve([ROOT / "notebooks" / NOTEBOOK], tmp_path_factory.mktemp("lab"), SHOTS / "lab.log") as server:
        yield server


def stop(server: subprocess.Popen, url: str, token: str, runtime: Path) -> None:
    """Ask the server to shut down (it stops its kernels), then end its process group and any kernel left."""
    with contextlib.suppress(OSError, ValueError):
        request(f"{url}/api/shutdown", token, method="POST")
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=20)
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)  # make and jupyter: start_new_session made the group ours
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=wait)
            break
    # Kernels run in sessions of their own; ours are the ones started with a connection file in our runtime folder.
    for pid in processes_mentioning(str(runtime)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------------------------
# The browser
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(lab):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 2400, "height": 1800})  # the lab's two panels side by side
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


@contextlib.contextmanager
def evidence(page, step: str):
    """On failure of ``step``: a screenshot and the page's HTML in build/browser/, named in the error."""
    try:
        yield
    except Exception as error:
        shot, html = SHOTS / f"failure-{step}.png", SHOTS / f"failure-{step}.html"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot), full_page=False)
            html.write_text(page.content())
        raise AssertionError(f"{step}: {error}\n(screenshot {shot}, page {html})") from error


# JavaScript run in the page: what every code cell's prompt says, its error outputs, and the kernel's state.
# JupyterLab 4.6 renders an error's traceback exactly like stderr (data-mime-type="application/vnd.jupyter.stderr",
# same classes), so errors are read from the notebook's model (output type "error"; the lab runs with
# --LabApp.expose_app_in_browser=True for this), and, as a second net, from the page: an output of type
# application/vnd.jupyter.error (as other JupyterLab versions mark it) or one showing a Python traceback.
CELLS_JS = r"""() => {
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    const notebook = panel && panel.querySelector('.jp-Notebook');
    if (!notebook) return null;
    const cells = [...notebook.querySelectorAll('.jp-CodeCell')];
    const prompts = cells.map(cell => cell.querySelector('.jp-InputArea-prompt').textContent.trim());
    const errors = {};
    const found = (k, text) => { errors[k] = (errors[k] ? errors[k] + '\n' : '') + text; };
    cells.forEach((cell, k) => cell.querySelectorAll('.jp-OutputArea-output').forEach(output => {
        const text = output.textContent;
        if (output.getAttribute('data-mime-type') === 'application/vnd.jupyter.error'
                || /Traceback \(most recent call last\)/.test(text))
            found(k, 'page: ' + text.trim().slice(-1500));
    }));
    const app = window.jupyterapp;
    const widget = app && app.shell && app.shell.currentWidget;
    const model = widget && widget.content && widget.content.model;
    let codeCells = 0;
    if (model) {
        for (let i = 0; i < model.cells.length; i++) {
            const cell = model.cells.get(i);
            if (cell.type !== 'code') continue;
            for (let j = 0; j < cell.outputs.length; j++) {
                const output = cell.outputs.get(j).toJSON();
                if (output.output_type === 'error')
                    found(codeCells, `model: ${output.ename}: ${output.evalue}`);
            }
            codeCells++;
        }
    }
    const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
    return {prompts, status: indicator ? indicator.getAttribute('data-status') : null, model: !!model,
            modelCodeCells: codeCells,
            errors: Object.entries(errors).map(([k, text]) => `code cell ${+k + 1} (${prompts[k]}): ${text}`)};
}"""


def kernel_idle(lab: dict, notebook: str) -> bool:
    """The server's word: a session for ``notebook`` with its kernel started and idle."""
    with contextlib.suppress(OSError, ValueError):
        for session in request(f"{lab['url']}/api/sessions", lab["token"]):
            if session.get("path", "").endswith(notebook) and session.get("kernel"):
                return session["kernel"].get("execution_state") == "idle"
    return False


def open_notebook(lab: dict, page, notebook: str) -> None:
    """Open ``notebook`` in JupyterLab and wait until its kernel is up and idle (server and page agree)."""
    page.goto(f"{lab['url']}/lab/tree/{notebook}?token={lab['token']}", timeout=PAGE_LOAD * 1000)
    page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for(state="visible", timeout=PAGE_LOAD * 1000)
    deadline = time.monotonic() + PAGE_LOAD
    while not (kernel_idle(lab, notebook) and page.evaluate(CELLS_JS)["status"] == "idle"):
        accept_dialogs(page)
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernel of {notebook} was not up and idle within {PAGE_LOAD} s "
                                 f"(page says {page.evaluate(CELLS_JS)['status']!r})")
        page.wait_for_timeout(250)
    accept_dialogs(page)


def accept_dialogs(page) -> None:
    """Accept any dialog JupyterLab put up (with this profile there should be none; "Select Kernel" would
    offer the notebook's own kernel, Python 3, as the default)."""
    dialog = page.locator(".jp-Dialog")
    while dialog.count():
        print("accepting a JupyterLab dialog:", dialog.first.inner_text()[:200].replace("\n", " | "), flush=True)
        dialog.first.locator(".jp-Dialog-button.jp-mod-accept").click()
        dialog.first.wait_for(state="detached", timeout=10_000)


def menu(page, menu_name: str, item: str) -> None:
    """Click ``menu_name`` > ``item`` in JupyterLab's menu bar."""
    exactly = lambda text: re.compile(f"^{re.escape(text)}$")  # noqa: E731
    page.locator(".lm-MenuBar-item", has=page.locator(".lm-MenuBar-itemLabel", has_text=exactly(menu_name))).click()
    page.locator(".lm-Menu .lm-Menu-item:not(.lm-mod-disabled)",
                 has=page.locator(".lm-Menu-itemLabel", has_text=exactly(item))).click()


def run_all(page, timeout: float = RUN_ALL) -> dict:
    """Edit > Clear Outputs of All Cells (the stored notebook has execution counts), then Run > Run All Cells;
    returns what the cells show once every cell has run (or an error stopped the run) and the kernel is idle."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(f"() => ({CELLS_JS})().prompts.every(p => !/\\d/.test(p))", timeout=10_000)
    menu(page, "Run", "Run All Cells")
    page.wait_for_function(
        f"""() => {{ const s = ({CELLS_JS})();
            return s.status === 'idle' && s.prompts.length > 0
                && (s.prompts.every(p => /^\\[\\d+\\]:$/.test(p)) || s.errors.length > 0); }}""",
        timeout=timeout * 1000, polling=250)
    return page.evaluate(CELLS_JS)


@pytest.fixture(scope="module")
def ran(lab, page):
    """Notebook 08 opened in JupyterLab and run with Run > Run All Cells; returns what the cells show."""
    started = time.monotonic()
    with evidence(page, "open"):
        open_notebook(lab, page, NOTEBOOK)
    say(f"{NOTEBOOK} open, kernel idle", started)
    with evidence(page, "run-all"):
        cells = run_all(page)
    say(f"Run All Cells done: {len(cells['prompts'])} code cells, {len(cells['errors'])} errors", started)
    page.screenshot(path=str(SHOTS / "ran.png"))
    return cells


def test_run_all_cells_without_errors(ran):
    assert ran["model"], "could not read the notebook's model in the page (window.jupyterapp), so not its errors"
    assert ran["modelCodeCells"] == len(ran["prompts"]), (
        f"the page shows {len(ran['prompts'])} code cells, the model has {ran['modelCodeCells']}")
    assert not ran["errors"], "cells of {} show errors:\n{}".format(NOTEBOOK, "\n\n".join(ran["errors"]))
    unrun = [f"code cell {k + 1}: {p!r}" for k, p in enumerate(ran["prompts"]) if not p.strip("[]:").isdigit()]
    assert not unrun, f"cells without an execution count after Run All Cells: {unrun}"
    assert ran["status"] == "idle"


# ----------------------------------------------------------------------------------------------
# The loss lab
# ----------------------------------------------------------------------------------------------
def figure_images(lab_widget) -> list[str]:
    """Fingerprints of the pictures in the lab's panels (the <img> of each panel's figure Output), in order."""
    sources = lab_widget.locator(".jupyter-widgets-output-area img, .widget-output img").evaluate_all(
        "images => images.map(image => image.src)")
    return [hashlib.sha1(source.encode()).hexdigest()[:12] for source in sources]


# The kernel states the page receives, in order: what a widget change or a click sets off on the kernel has been
# answered, every output of it received by the page, once the page has seen the kernel busy and then idle.
WATCH_KERNEL_JS = """() => {
    const context = window.jupyterapp.shell.currentWidget.sessionContext;
    window.__labkitStates = [];
    if (!window.__labkitWatching) {
        context.statusChanged.connect((_, state) => window.__labkitStates.push(state));
        window.__labkitWatching = true;
    }
}"""
ANSWERED_JS = "() => window.__labkitStates.includes('busy') && window.__labkitStates.at(-1) === 'idle'"


def wait_for_answer(page, lab_widget, status, old_status: str, what: str) -> list[str]:
    """After ``what`` (the page's kernel watch armed before it): wait until the kernel has answered (busy, then
    idle) and the panel's status line no longer says ``old_status``; return the pictures once they have settled."""
    try:
        page.wait_for_function(ANSWERED_JS, timeout=WIDGET_UPDATE * 1000, polling=100)
        page.wait_for_function("([element, old]) => element.textContent.trim() !== old",
                               arg=[status.element_handle(), old_status], timeout=10_000)
    except sync_api.TimeoutError:
        raise AssertionError(f"no answer from the kernel within {WIDGET_UPDATE} s after {what}: kernel states "
                             f"{page.evaluate('window.__labkitStates')}, status {status.inner_text()!r}") from None
    pictures, deadline = figure_images(lab_widget), time.monotonic() + 10
    while True:  # the widget views render the last outputs asynchronously: the same pictures twice in a row
        page.wait_for_timeout(250)
        again = figure_images(lab_widget)
        if again == pictures or time.monotonic() > deadline:
            return again
        pictures = again


def test_loss_lab_responds(ran, page):
    started = time.monotonic()
    button = page.get_by_role("button", name=STEPS_LABEL, exact=True)
    lab_widget = page.locator(".jupyter-widgets.widget-vbox", has=button).first  # the outermost: LossLab.widget
    with evidence(page, "widget"):
        assert button.count() == 1, f"expected one {STEPS_LABEL!r} button (the loss lab), found {button.count()}"
        button.scroll_into_view_if_needed()
        margin = lab_widget.locator(".widget-slider", has=page.locator(".widget-label", has_text="margin")).first
        margin.wait_for(state="visible")
        sliders = lab_widget.locator(".widget-slider").count()
        assert sliders == 6, f"expected the lab's 6 sliders (steps, learning rate, margin and scale twice), found {sliders}"
        before = figure_images(lab_widget)
        assert len(before) == 2, f"expected a figure in each of the lab's two panels, found {len(before)} images"
        status = lab_widget.locator(".widget-html").nth(1)  # the first panel's status line, after its title
        assert status.inner_text().startswith("loss = "), f"the first panel's status says {status.inner_text()!r}"
        lab_widget.screenshot(path=str(SHOTS / "before.png"))
    say(f"loss lab rendered: {sliders} sliders, 2 figures; {status.inner_text()!r}", started)

    with evidence(page, "slider"):
        readout = margin.locator(".widget-readout")
        old_margin, old_status = readout.inner_text(), status.inner_text()
        handle = margin.locator(".noUi-handle").first
        handle.focus()
        page.evaluate(WATCH_KERNEL_JS)
        for _ in range(4):  # 4 steps of 0.05; sent to the kernel as one change (continuous_update=False)
            handle.press("ArrowRight")
        after_slider = wait_for_answer(page, lab_widget, status, old_status, "moving the margin slider")
        new_margin = readout.inner_text()
        assert float(new_margin) > float(old_margin), f"margin {old_margin} -> {new_margin} after ArrowRight"
        assert after_slider[0] != before[0], f"the first panel's figure did not change with the margin ({new_margin})"
        assert after_slider[1] == before[1], "the second panel's figure changed with the first panel's margin"
        lab_widget.screenshot(path=str(SHOTS / "after-slider.png"))
    say(f"margin {old_margin} -> {new_margin}: the first panel's figure changed; {status.inner_text()!r}", started)

    with evidence(page, "steps"):
        old_status = status.inner_text()
        page.evaluate(WATCH_KERNEL_JS)
        button.click()
        after = wait_for_answer(page, lab_widget, status, old_status, f"pressing {STEPS_LABEL!r}")
        assert after[0] != after_slider[0], "the first panel's figure did not change after the gradient steps"
        assert after[1] != after_slider[1], "the second panel's figure did not change after the gradient steps"
        lab_widget.screenshot(path=str(SHOTS / "after.png"))
        page.screenshot(path=str(SHOTS / "page.png"))
        errors = page.evaluate(CELLS_JS)["errors"]
        assert not errors, "errors after using the lab:\n" + "\n\n".join(errors)
    say(f"{STEPS_LABEL!r}: both figures changed; {status.inner_text()!r}", started)
    print("screenshots:", *(SHOTS / name for name in ("ran.png", "before.png", "after-slider.png", "after.png",
                                                      "page.png")))

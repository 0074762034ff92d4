"""plugins/ as a deployment loads it: Airflow's plugin manager must not import the `fruits`
library file by file under bare module names.

Every Airflow process (scheduler, dag processor, triggerer, api-server; the task runner through
the Task SDK's copy) loads plugins the same way. Airflow 3.3's
`airflow/_shared/plugins_manager/plugins_manager.py::_load_plugins_from_plugin_directory` walks
the folder with `find_path_from_directory(plugins_folder, ".airflowignore", ignore_file_syntax)`
and, for each `.py` it yields, does `mod_name = path.stem`,
`SourceFileLoader(mod_name, file_path)`, `sys.modules[spec.name] = mod`. So
`plugins/fruits/databricks.py` became `sys.modules["databricks"]`, and `import databricks.sdk`
failed with "'databricks' is not a package" (likewise `wheel`). The walk honours `.airflowignore`
(`airflow/_shared/module_loading/file_discovery.py::_find_path_from_directory` prunes ignored
directories), in `[core] dag_ignore_file_syntax` for `airflow.plugins_manager` and always in glob
syntax for `airflow.sdk.plugins_manager`: `plugins/.airflowignore` must hold under both.

A fresh interpreter, because the plugin manager caches what it loaded (`@cache _get_plugins`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localdev.emulators import airflow_home_env

pytestmark = pytest.mark.dag

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"

# Installed distributions a file of plugins/fruits/ is named like (checked: they exist below), and
# the modules the DAG's tasks import only when they run (the triggerer's triggers, the hooks).
SHADOWED_NAMES = ("databricks.sdk", "wheel")
IMPORTED_AT_RUN_TIME = (
    "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.amazon.aws.hooks.emr",
    "airflow.providers.amazon.aws.triggers.emr",
    "airflow.providers.databricks.hooks.databricks",
    "airflow.providers.databricks.triggers.databricks",
    "airflow.providers.microsoft.azure.hooks.wasb",
)

DEPLOYED_PROCESS = """
import importlib, json, sys, traceback
from pathlib import Path

plugins, dag_file = Path(sys.argv[1]).resolve(), sys.argv[2]
modules = json.loads(sys.argv[3])
from airflow import plugins_manager
from airflow.sdk import plugins_manager as task_sdk_plugins_manager
from airflow._shared.module_loading import find_path_from_directory

plugins_manager.ensure_plugins_loaded()  # scheduler, dag processor, triggerer, api-server
task_sdk_plugins_manager.integrate_macros_plugins()  # the task runner

def from_plugins(module):
    path = getattr(module, "__file__", None)
    return bool(path) and Path(path).resolve().is_relative_to(plugins)

result = {
    "plugin_import_errors": plugins_manager.get_import_errors(),
    "bare_names": sorted(
        name for name, module in list(sys.modules.items())
        if from_plugins(module) and name.split(".")[0] != "fruits"
    ),
    "walked": {
        syntax: sorted(
            str(Path(p).relative_to(plugins))
            for p in find_path_from_directory(plugins, ".airflowignore", syntax)
            if p.endswith(".py")
        )
        for syntax in ("glob", "regexp")
    },
    "import_errors": {},
}
try:
    from airflow.dag_processing.dagbag import DagBag  # as the dag processor parses it

    bag = DagBag(dag_file)  # LOAD_EXAMPLES is False
    result["import_errors"].update(bag.import_errors)
    dag = bag.dags["fruits_pipeline"]
    operators = {getattr(t, "operator_class", type(t)) for t in dag.tasks}
    modules += sorted({o.__module__ for o in operators if o.__module__.startswith("airflow.")})
    result["tasks"] = len(dag.tasks)
except Exception:
    result["import_errors"][dag_file] = traceback.format_exc(limit=3)
for name in modules:
    try:
        module = importlib.import_module(name)
        if from_plugins(module):
            raise ImportError(f"{name} is {module.__file__}")
    except Exception:
        result["import_errors"][name] = traceback.format_exc(limit=3)
print("RESULT " + json.dumps(result))
"""


def test_plugins_load_as_deployed_and_shadow_no_installed_package(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW") and key != "PYTHONPATH"  # fruits from plugins/ alone
    }
    env.update(airflow_home_env(tmp_path))  # AIRFLOW__CORE__PLUGINS_FOLDER=<repo>/plugins
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            DEPLOYED_PROCESS,
            str(PLUGINS),
            str(REPO / "dags" / "fruits_pipeline.py"),
            json.dumps([*SHADOWED_NAMES, *IMPORTED_AT_RUN_TIME]),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])

    shadowing = {"imported under bare names": result["bare_names"], **result["import_errors"]}
    assert shadowing == {"imported under bare names": []}, "\n".join(map(str, shadowing.values()))
    assert result["plugin_import_errors"] == {}
    assert result["tasks"] > 10
    # The walk Airflow makes yields no file of the library, whichever ignore syntax is set.
    assert result["walked"] == {"glob": [], "regexp": []}


def test_the_names_checked_are_the_ones_the_library_shadows():
    """The check above is about real collisions: these packages are installed, and a file of
    plugins/fruits/ carries each one's top-level name."""
    library_files = {p.stem for p in (PLUGINS / "fruits").glob("*.py")}
    for name in SHADOWED_NAMES:
        top = name.split(".")[0]
        assert top in library_files
        installed = importlib.util.find_spec(top)
        assert installed and not Path(installed.origin).is_relative_to(PLUGINS)

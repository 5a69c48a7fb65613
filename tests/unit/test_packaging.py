"""A plain (not editable) install has everything `serve-bench run` needs: the shipped load profiles and dashboards,
which live at the top of the repository and travel as package data."""

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {p.stem for p in (ROOT / "load_profiles").glob("*.yaml")}


def _shipped(folder: str) -> set[str]:
    """The files of a top-level asset folder, named as the wheel names them (under serve_bench/), READMEs aside."""
    return {"serve_bench/" + p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*")
            if p.is_file() and p.suffix != ".md"}


@pytest.mark.unit
def test_the_listed_packages_are_every_package_and_the_mapped_asset_folders() -> None:
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    tops = {"serve_bench.load_profiles": "load_profiles", "serve_bench.dashboards": "dashboards"}
    assert setup["package-dir"] == tops
    found = set(setuptools.find_packages(str(ROOT), include=["serve_bench*"]))
    mapped = {pkg for pkg in setup["packages"] if any(pkg == m or pkg.startswith(m + ".") for m in tops)}
    assert set(setup["packages"]) == found | mapped
    folders = {"serve_bench." + d.relative_to(ROOT).as_posix().replace("/", ".") for top in tops.values()
               for d in [ROOT / top, *(ROOT / top).rglob("*")] if d.is_dir() and d.name != "__pycache__"}
    assert mapped == folders


@pytest.mark.system
def test_the_wheel_ships_the_profiles_and_an_install_finds_them(tmp_path: Path) -> None:
    assert {"quick", "ladder", "poisson", "single", "sweep"} <= SHIPPED
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("serve_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    profiles = _shipped("load_profiles")
    assert {f"serve_bench/load_profiles/{p}.yaml" for p in SHIPPED} <= profiles
    assert "serve_bench/load_profiles/traces/example-mooncake.jsonl" in profiles  # the replay example's trace
    dashboards = _shipped("dashboards")
    assert "serve_bench/dashboards/provisioning/datasources/prometheus.yaml" in dashboards
    assert profiles | dashboards <= names
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    code = ("import serve_bench; from serve_bench.workload.profiles import list_profiles, load_profile; "
            "from serve_bench.observe.dashboards import DASHBOARDS; "
            "print(all(d.is_file() for d in DASHBOARDS)); "
            "print(serve_bench.__file__); print(sorted(list_profiles())); print(load_profile('quick').name)")
    # from elsewhere, with the installed copy first on the path (ahead of this checkout's editable install)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    dashboards_found, where, profiles, quick = done.stdout.strip().splitlines()[-4:]
    assert dashboards_found == "True"
    assert Path(where).is_relative_to(site)
    assert sorted(eval(profiles)) == sorted(SHIPPED) and quick == "quick"

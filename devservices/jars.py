"""Java classpaths resolved once by Maven from a pom, cached per pom content."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from devservices._proc import log_tail, say
from devservices.errors import ServicesError
from devservices.settings import Settings


def lib_dir(pom: Path, root: Path) -> Path:
    """The classpath directory for this pom's content (a changed pom resolves again)."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    return root / digest


def ensure_jars(settings: Settings, pom: Path, root: Path, marker: str, what: str) -> Path:
    """The directory of ``pom``'s runtime jars under ``root``, resolved by Maven on
    first use; ``marker`` is a glob that must match one jar (the main artifact)."""
    lib = lib_dir(pom, root)
    if (lib / ".complete").is_file():
        return lib
    if shutil.which(settings.mvn) is None:
        raise ServicesError(
            f"{settings.mvn} not found on PATH "
            f"(Maven is needed once to fetch the {what} jars from Maven Central)"
        )
    say(f"resolving {what} jars with Maven (first run only; cache: ~/.m2 and {lib})")
    lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_name(f"{lib.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log = settings.services_dir / "maven.log"
    with log.open("wb") as out:
        try:
            code = subprocess.run(
                [settings.mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom),
                 "dependency:copy-dependencies", "-DincludeScope=runtime",
                 f"-DoutputDirectory={tmp}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=1800,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    if code != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        log_tail(log, "maven")
        raise ServicesError(f"could not resolve the {what} jars (see {log})")
    if not any(tmp.glob(marker)):
        shutil.rmtree(tmp, ignore_errors=True)
        raise ServicesError(f"Maven produced no {marker} jar")
    (tmp / ".complete").touch()
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    for other in lib.parent.iterdir():  # classpaths of older poms
        if other != lib:
            if other.is_symlink():
                other.unlink()
            else:
                shutil.rmtree(other, ignore_errors=True)
    return lib

"""nbgrader's API on a course directory, with the course's config file."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from autograder.config import NBGRADER_CONFIG


def _venv_on_path() -> None:
    """nbgrader runs ``alembic`` by name: the interpreter's bin/ must be on PATH even when
    the venv is not activated (``.venv/bin/python -m autograder``)."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def nbgrader_config(course_root: Path, db_path: Path | None = None, sandboxed: bool = False) -> Config:
    config = PyFileConfigLoader(NBGRADER_CONFIG.name, path=str(NBGRADER_CONFIG.parent)).load_config()
    config.CourseDirectory.root = str(course_root)
    config.CourseDirectory.db_url = f"sqlite:///{db_path or course_root / 'gradebook.db'}"
    config.Execute.kernel_manager_class = ("autograder.sandbox.SandboxKernelManager" if sandboxed
                                           else "jupyter_client.manager.AsyncKernelManager")
    return config


def nbgrader_api(course_root: Path, db_path: Path | None = None, sandboxed: bool = False,
                 submitted_dir: Path | None = None, autograded_dir: Path | None = None,
                 cell_timeout_s: int | None = None, output_bytes: int | None = None):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    _venv_on_path()
    config = nbgrader_config(course_root, db_path, sandboxed)
    if cell_timeout_s is not None:
        config.Execute.timeout = cell_timeout_s
    if output_bytes is not None:
        config.LimitedExecute.max_output_bytes = output_bytes
    if submitted_dir is not None:
        config.CourseDirectory.submitted_directory = str(submitted_dir)
    if autograded_dir is not None:
        config.CourseDirectory.autograded_directory = str(autograded_dir)
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)

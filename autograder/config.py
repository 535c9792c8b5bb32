"""Paths of the instructor side and the course settings (autograder/course.toml)."""
from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCES = HERE / "sources"
COURSE_TOML = HERE / "course.toml"
COURSE_ROOT = HERE / "course"          # nbgrader's course directory (generated, not committed)
NBGRADER_CONFIG = HERE / "nbgrader_config.py"


def course_settings() -> dict[str, str]:
    """Repository URL, branch and the student package's pip location, from one file."""
    data = tomllib.loads(COURSE_TOML.read_text())
    url = data["repository"]["url"].rstrip("/")
    if not url.startswith("https://github.com/"):
        raise ValueError(f"{COURSE_TOML}: repository.url must be a https://github.com/... URL, got {url!r}")
    return {"url": url, "repo_path": url.removeprefix("https://github.com/"), "branch": data["repository"]["branch"],
            "package": data["student_package"]["pip"]}

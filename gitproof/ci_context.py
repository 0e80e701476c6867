"""Which CI job made a receipt: recorded in the receipt's ``ci:`` line.

``detect`` reads the variables GitHub Actions and GitLab CI set in every job.
They say where the run happened; they prove nothing by themselves (anyone
can set them), but they are signed with the rest of the receipt, so an
auditor can go from a receipt to the job's log. Outside CI: ``None``.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

# receipt field -> environment variable, per provider
GITHUB_ACTIONS = {
    "repository": "GITHUB_REPOSITORY",
    "workflow_ref": "GITHUB_WORKFLOW_REF",
    "run_id": "GITHUB_RUN_ID",
    "run_attempt": "GITHUB_RUN_ATTEMPT",
    "runner_name": "RUNNER_NAME",
    "runner_environment": "RUNNER_ENVIRONMENT",
    "sha": "GITHUB_SHA",
    "ref": "GITHUB_REF",
}
GITLAB_CI = {
    "project_path": "CI_PROJECT_PATH",
    "pipeline_id": "CI_PIPELINE_ID",
    "job_id": "CI_JOB_ID",
    "job_url": "CI_JOB_URL",
    "runner_description": "CI_RUNNER_DESCRIPTION",
    "commit_sha": "CI_COMMIT_SHA",
    "ref": "CI_COMMIT_REF_NAME",
}
PROVIDERS = (
    ("github-actions", "GITHUB_ACTIONS", GITHUB_ACTIONS),
    ("gitlab-ci", "GITLAB_CI", GITLAB_CI),
)
_MAX_VALUE = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def detect(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The CI job's identity from ``environ``, or None when not running in a known CI.

    Unset or empty variables are left out; ``provider`` is always there.
    """
    for provider, flag, fields in PROVIDERS:
        if environ.get(flag, "").strip().lower() != "true":
            continue
        context: dict[str, Any] = {"provider": provider}
        for key, variable in fields.items():
            value = _clean(environ.get(variable, ""))
            if value:
                context[key] = value
        return context
    return None


def _clean(value: str) -> str:
    """One plain line: control characters would make the receipt unreadable."""
    return _CONTROL.sub("", value).strip()[:_MAX_VALUE]

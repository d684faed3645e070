"""The trainer's side of the rollout controller: which version is in production, and handing a
new version over as a candidate (`fleetserve rollout auto MODEL VERSION`)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from fleetserve.rollout import client
from fleetserve.trainer.publish import version_numbers


class RegistrationError(RuntimeError):
    """The rollout controller could not be asked, or refused the new version."""


def controller_production_version(controller: str, model: str, token: str | None = None) -> int | None:
    """The version the controller reports in production (pinned, or the highest one served when
    nothing is pinned); None when it knows no version of the model.

    Raises RegistrationError when the controller cannot be reached or answers with an error.
    """
    path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
    try:
        status = client.call(controller, "GET", path, token=token)
    except client.ControllerError as exc:
        if exc.status == 404:
            return None
        where = f" (HTTP {exc.status})" if exc.status else ""
        raise RegistrationError(f"cannot read {model}'s production version: {exc.message}{where}") from None
    for row in status.get("versions") or []:
        if row.get("stage") == "production":
            return int(row["version"])
    pinned = (status.get("plan") or {}).get("production")
    return int(pinned) if pinned is not None else None


def pin_production(controller: str, model: str, version: int, token: str | None = None) -> bool:
    """Pin ``version`` as production in the controller's plan when the plan pins none; True when
    this call pinned it.

    Without a pinned production every replica serves the highest version it has, so a version
    published next would take all traffic at once, before any shadow or canary step. Pinned
    first, it waits for the automated rollout.
    """
    path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
    try:
        status = client.call(controller, "GET", path, token=token)
        if (status.get("plan") or {}).get("production") is not None:
            return False
        body = {"actor": "trainer", "version": version, "reason": "pinned before publishing a candidate"}
        client.call(controller, "POST", path + "/promote", body, token)
    except client.ControllerError as exc:
        where = f" (HTTP {exc.status})" if exc.status else ""
        raise RegistrationError(
            f"cannot pin {model} v{version} as production before publishing: {exc.message}{where}"
        ) from None
    return True


def latest_version(model_dir: Path) -> int | None:
    """The highest published version in the repository (what replicas serve when nothing is pinned)."""
    versions = version_numbers(model_dir)
    return versions[-1] if versions else None


def rollout_options(reason: str) -> dict[str, bool]:
    """The automated rollout's options for a candidate trained for ``reason``.

    Retrained because of drift, the candidate is expected to disagree with production exactly
    where production fails (the drifted inputs), so shadow agreement is shown but not judged,
    and every canary step waits for live accuracy on labels instead.
    """
    if reason == "drift":
        return {"judge_agreement": False, "require_accuracy": True}
    return {}


def hand_over(
    controller: str, model: str, version: int, token: str | None = None, reason: str = "manual"
) -> None:
    """Start the controller's automated rollout (shadow, canary steps, promote) of ``version``.

    Prints the controller's answer; raises RegistrationError when it refused or could not be reached.
    """
    rc = client.auto(controller, token, model, version, rollout_options(reason))
    if rc != 0:
        raise RegistrationError(
            f"{model} v{version} is published, but the rollout controller at {controller} did not start "
            "its automated rollout (its answer is above)"
        )

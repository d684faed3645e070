"""`fleetserve train`: run the pipeline from settings and turn its outcomes into exit statuses.

Exit status: 0 published (and handed to the controller with --register); 1 the gate refused
the candidate, or the controller refused it; 2 bad input (unknown model, missing production
data folder, an unusable production version, an unreachable controller); 3 fewer labelled
production rows than --min-production-rows came within --wait-for-rows-s.
"""

from __future__ import annotations

import sys

from fleetserve.trainer.evaluate import ParentModelError
from fleetserve.trainer.gate import GateRefused
from fleetserve.trainer.pipeline import run, with_inversion
from fleetserve.trainer.production import NotEnoughProductionData
from fleetserve.trainer.register import RegistrationError
from fleetserve.trainer.settings import TrainSettings
from fleetserve.trainer.train import DEFAULT_AUGMENTATION


def train(settings: TrainSettings, progress: bool = True) -> int:
    """Train, gate and publish as ``settings`` say; print the outcome; return the exit status."""
    try:
        version_dir = run(
            settings.model,
            settings.model_repository,
            settings.epochs,
            settings.seed,
            production_data=settings.production_data,
            production_weight=settings.production_weight,
            production_eval_fraction=settings.production_eval_fraction,
            min_production_rows=settings.min_production_rows,
            wait_for_rows_s=settings.wait_for_rows_s,
            register=settings.register_url,
            token=settings.token(),
            reason=settings.reason,
            gate_margin=settings.gate_margin,
            augmentation=with_inversion(DEFAULT_AUGMENTATION, settings.augment_invert),
            threads=settings.threads,
            progress=progress,
        )
    except NotEnoughProductionData as exc:
        print(f"fleetserve train: not trained: {exc}", file=sys.stderr)
        return 3
    except GateRefused as exc:
        print(f"fleetserve train: not published: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, ParentModelError) as exc:
        print(f"fleetserve train: {exc}", file=sys.stderr)
        return 2
    except RegistrationError as exc:
        print(f"fleetserve train: {exc}", file=sys.stderr)
        return 1 if "is published" in str(exc) else 2
    print(f"published {version_dir}")
    return 0

"""The exceptions that mean "bad input" rather than a bug: the CLI reports them in one line, exit 2."""

from __future__ import annotations

from segrecipes.config import ConfigError
from segrecipes.data.spec import DataError
from segrecipes.deploy.errors import DeployError
from segrecipes.engine.checkpoint import CheckpointError
from segrecipes.evaluation.options import InferenceConfigError
from segrecipes.models.factory import ModelError

USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError, DataError, CheckpointError, ModelError, DeployError, InferenceConfigError
)

"""The tests' finite-difference helpers: the package's own (dptrain/model_check/gradients.py),
which `dptrain check` runs on a user's model."""
from dptrain.model_check.gradients import (EPS, MAX_ENTRIES, check_layer,  # noqa: F401
                                           layer_errors, numeric_grad, rel_error)

"""keras-tuner's private API, in one place.

mmauto needs a few things keras-tuner does not make public: where it keeps its state files
(to write them atomically), its per-trial build (a fresh Keras session inside the distribution
strategy), its checkpoint path, its worker test, and the gRPC servicer of its chief (to watch
workers). Everything private is reached through this module; tests/test_search.py checks each
name still exists, so an upgrade that moves one fails there, not in a user's search.
pyproject.toml pins keras-tuner below the next minor version for the same reason.
"""

from __future__ import annotations

# Methods of kt.Tuner / kt.Oracle that mmauto calls or overrides.
TUNER_METHODS = ("_is_worker", "_get_tuner_fname", "_try_build", "_get_checkpoint_fname")
ORACLE_METHODS = ("_get_oracle_fname", "_get_trial_dir", "_save_trial",
                  "_duplicate", "_random_values")  # the last two: search/oracles.py PortfolioFirst


def is_worker(tuner) -> bool:
    return tuner._is_worker()


def tuner_state_file(tuner) -> str:
    return tuner._get_tuner_fname()


def build_trial_model(tuner, hp):
    """keras-tuner's build of one trial: a fresh Keras session, inside the strategy's scope."""
    return tuner._try_build(hp)


def checkpoint_file(tuner, trial_id: str) -> str:
    return tuner._get_checkpoint_fname(trial_id)


def oracle_state_file(oracle) -> str:
    return oracle._get_oracle_fname()


def trial_dir(oracle, trial_id: str) -> str:
    return oracle._get_trial_dir(trial_id)


def chief_servicer():
    """(OracleServicer class, exit_chief(oracle) -> bool, add_servicer_to_server(servicer, server))."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    return OracleServicer, exit_chief, protos.get_service_grpc().add_OracleServicer_to_server

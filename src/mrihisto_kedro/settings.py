"""Project settings. There is no need to edit this file unless you want to change values
from the Kedro defaults. For further information, including these default values, see
https://docs.kedro.org/en/stable/configure/configuration_basics/#configuration"""

# Instantiated project hooks: one run per output root (a lock), stale temporaries removed
# and stale MLflow runs marked before any node (src/mrihisto_kedro/hooks.py).
# Metric tables measured on a model retrained since are marked STALE after each run.
from mrihisto_kedro.hooks import (  # noqa: E402
    RunSafetyHooks,
    RunSummaryHooks,
    RunTagHooks,
    StaleTableHooks,
    WorkerRankHooks,
    install_log_filters,
    torchrun_rank,
)

# Kedro imports this module before kedro-mlflow's: the filters are in place for its warnings
install_log_filters()

if torchrun_rank() > 0:  # a torchrun worker: rank 0 writes, locks and logs (docs/cluster.md)
    HOOKS: tuple[object, ...] = (WorkerRankHooks(),)
    # the distribution's metadata Name, which Kedro matches (kedro-mlflow 1.x: "kedro_mlflow")
    DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")
else:
    _SAFETY = RunSafetyHooks()
    HOOKS = (_SAFETY, RunTagHooks(_SAFETY), StaleTableHooks(), RunSummaryHooks())

# Installed plugins for which to disable hook auto-registration.
# DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

# Class that manages the KedroSession.
# from kedro.framework.session import KedroSession
# SESSION_CLASS = KedroSession

# Class that manages storing KedroSession data.
# from kedro.framework.session.store import BaseSessionStore
# SESSION_STORE_CLASS = BaseSessionStore
# Keyword arguments to pass to the `SESSION_STORE_CLASS` constructor.
# SESSION_STORE_ARGS = {
#     "path": "./sessions"
# }

# Directory that holds configuration.
# CONF_SOURCE = "conf"

# Class that manages how configuration is loaded.
# from kedro.config import OmegaConfigLoader

# CONFIG_LOADER_CLASS = OmegaConfigLoader

# Keyword arguments to pass to the `CONFIG_LOADER_CLASS` constructor.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # "config_patterns": {
    #     "spark" : ["spark*/"],
    #     "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    # }
}

# Class that manages Kedro's library components.
# from kedro.framework.context import KedroContext
# CONTEXT_CLASS = KedroContext

# Class that manages the Data Catalog.
# from kedro.io import DataCatalog
# DATA_CATALOG_CLASS = DataCatalog

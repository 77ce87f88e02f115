"""Put savflow's Hydra configs on the search path of sam2's global Hydra instance.

``import sam2`` initialises a global Hydra instance over ``pkg://sam2`` and ``build_sam2*`` compose through it.
In a regular install Hydra discovers :class:`SavflowSearchPathPlugin` by itself; an editable install hides the
``hydra_plugins`` namespace from Hydra's scan, so every entry that composes configs calls
:func:`ensure_search_path` first. It is idempotent.
"""

from __future__ import annotations

from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra_plugins.savflow_searchpath import CONFIG_PACKAGE, SavflowSearchPathPlugin


def _has_our_path() -> bool:
    gh = GlobalHydra.instance()
    if not gh.is_initialized():
        return False
    return any(entry.path == CONFIG_PACKAGE for entry in gh.config_loader().get_sources())


def ensure_search_path() -> None:
    """Make ``compose(config_name=...)`` resolve both sam2's configs and ours."""
    import sam2  # noqa: F401  (initialises the global instance the way build_sam2 expects)

    if _has_our_path():
        return
    plugins = Plugins.instance()
    if SavflowSearchPathPlugin not in plugins.discover(SearchPathPlugin):
        plugins.register(SavflowSearchPathPlugin)
    GlobalHydra.instance().clear()
    initialize_config_module("sam2", version_base="1.2")

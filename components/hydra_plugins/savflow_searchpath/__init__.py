"""Hydra SearchPathPlugin that puts savflow's configs on every Hydra search path.

sam2 initialises a global Hydra instance over its own package (``pkg://sam2``) at import time and
``build_sam2*`` compose configs by name through it; appending our config package here lets the same call
resolve both ``configs/sam2.1/sam2.1_hiera_b+.yaml`` (sam2's) and ``sam2.1_hiera_tiny128`` (ours), without
copying anything into the sam2 package.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

CONFIG_PACKAGE = "pkg://savflow.configs"


class SavflowSearchPathPlugin(SearchPathPlugin):
    """Appends ``savflow.configs`` (and sam2's package, for compose calls rooted elsewhere)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="savflow", path=CONFIG_PACKAGE)
        search_path.append(provider="savflow-sam2", path="pkg://sam2")

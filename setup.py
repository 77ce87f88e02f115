"""Package discovery for the two folders the package spans (pyproject.toml holds everything else).

``savflow`` and the Hydra plugin namespace are found under ``components/``; ``savflow.pipelines`` is the
``pipelines/`` folder. Both lists derive themselves, so a new sub-package needs no edit here.
"""

from setuptools import find_namespace_packages, find_packages, setup

packages = find_packages("components", include=["savflow", "savflow.*"])
packages += find_namespace_packages("components", include=["hydra_plugins.*"], exclude=["*.__pycache__"])
packages += ["savflow." + p for p in find_packages(".", include=["pipelines", "pipelines.*"])]

setup(packages=packages, package_dir={"": "components", "savflow.pipelines": "pipelines"})

"""Package layout that pyproject.toml cannot say declaratively: the checkout's top-level
``feature_repo/`` (where the stock ``feast`` CLI runs) ships in the wheel as
``ecaug_feast/feature_repo/``, the default ``ECAUG_FEATURE_REPO`` of an installed ecaug."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["ecaug_feast*", "recommender*"]) + ["ecaug_feast.feature_repo"],
    package_dir={"ecaug_feast.feature_repo": "feature_repo"},
)

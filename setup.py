"""Package discovery only; all metadata lives in pyproject.toml.

The top-level kernels/, pipelines/ and configs/ folders install as genossa.kernels,
genossa.pipelines and genossa.configs (see package-dir in pyproject.toml), which
setuptools' declarative `find` cannot express, so the list is built here.
"""
from setuptools import find_packages, setup

MAPPED = {"kernels": "genossa.kernels", "pipelines": "genossa.pipelines", "configs": "genossa.configs"}

packages = find_packages(include=["genossa", "genossa.*"])
for folder, name in MAPPED.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(where=folder)]

setup(packages=packages)

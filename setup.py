"""Package discovery only; all metadata lives in pyproject.toml.

The top-level kernels/, pipelines/, configs/ and workflows/ folders install as genossa.kernels,
genossa.pipelines, genossa.configs and genossa.workflows (see package-dir in pyproject.toml), which
setuptools' declarative `find` cannot express, so the list is built here.
"""
from setuptools import find_namespace_packages, find_packages, setup

MAPPED = {"kernels": "genossa.kernels", "pipelines": "genossa.pipelines", "configs": "genossa.configs",
          "workflows": "genossa.workflows"}

packages = find_packages(include=["genossa", "genossa.*"])
for folder, name in MAPPED.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(where=folder)]
# the workflow's folders hold only data (rules/*.smk, envs, profiles): listed so that
# setuptools ships them without warning that they are not packages
packages += [f"genossa.workflows.{sub}" for sub in find_namespace_packages(where="workflows", exclude=["*__pycache__*"])]

setup(packages=packages)

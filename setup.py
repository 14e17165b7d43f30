"""Packaging glue: setup.cfg holds the metadata; this file only lists the packages.

The top-level folders ``admin/`` and ``migrations/`` are installed under the specific
import names ``rop_admin`` and ``rop_migrations`` (a bare ``admin`` in site-packages
would collide with other distributions).
"""
from setuptools import find_namespace_packages, setup

packages = find_namespace_packages(include=["hub", "hub.*"], exclude=["*.__pycache__"])
# find_namespace_packages: the folders of templates and static files are packages of data too
# (setuptools warns about, and may one day drop, package data outside a listed package).
packages += ["rop_admin"] + [f"rop_admin.{p}" for p in find_namespace_packages("admin", exclude=["__pycache__", "*.__pycache__"])]
packages += ["rop_migrations", "rop_migrations.versions"]

setup(packages=packages)

"""The pure core must load none of streamparse, kafka or boto3 (design.md)."""

import subprocess
import sys

import forumstats

FORBIDDEN = ("streamparse", "pystorm", "kafka", "boto3", "botocore", "confluent_kafka")


def test_core_modules_import_no_adapters():
    code = (
        "import importlib, sys, forumstats\n"
        "for name in forumstats.CORE_MODULES: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imported adapters: {out.stdout}"


def test_every_core_module_is_listed_and_exists():
    import importlib

    for name in forumstats.CORE_MODULES:
        assert importlib.import_module(name).__name__ == name

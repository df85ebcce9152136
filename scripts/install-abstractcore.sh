#!/usr/bin/env bash
# AbstractCore declares a dependency on abstractvision itself; install it without its
# dependencies so that our editable install is kept, then add only what its import path needs.
set -euo pipefail
pip install -q --no-deps "abstractcore==2.30.0"
pip install -q "pydantic>=2.0.0,<3.0.0"

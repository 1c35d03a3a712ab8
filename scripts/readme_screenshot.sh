#!/usr/bin/env bash
# The README's screenshot of the web page, docs/img/serve-page.png: the browser test on one of
# privattrib's synthetic faces (never a real person's photo), with the demo attribution model and a
# synthetic identity gallery, in headless Chromium. The demo model is trained once into the usual
# cache ($PRIVATTRIB_CACHE or ~/.cache/privattrib) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PRIVATTRIB_SCREENSHOT_DIR=docs/img PRIVATTRIB_SCREENSHOT_MODEL=demo
export PRIVATTRIB_TEST_CACHE=${PRIVATTRIB_CACHE:-$HOME/.cache/privattrib}
exec "$PY" -m pytest tests/test_web_browser.py -m browser -k readme_screenshot -p no:cacheprovider -q "$@"

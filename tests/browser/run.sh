#!/usr/bin/env bash
# Runs the Playwright suite (tests/browser/test_browser.mjs) from CTest.
# Installs npm's playwright-core into $FIRMANTE_BINARY_DIR/browser-node when it
# is not there yet. Without Debian's chromium it skips (exit 77), except in CI
# ($CI set), where the browser must be there (scripts/install-deps installs it).
set -euo pipefail
src=${FIRMANTE_SOURCE_DIR:?}
bin=${FIRMANTE_BINARY_DIR:?}
chromium=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$chromium" ] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ -n "${CI:-}" ]; then
    echo "browser tests: $chromium, node or npm is missing in CI; scripts/install-deps installs them" >&2
    exit 1
  fi
  echo "SKIP browser tests: $chromium, node or npm is not installed (scripts/install-deps installs them)"
  exit 77
fi

nm="$bin/browser-node"
pw="$nm/node_modules/playwright-core"
if [ ! -f "$pw/package.json" ]; then
  mkdir -p "$nm"
  # One install per build tree; concurrent runs wait for each other.
  exec 9>"$nm/.lock"
  flock 9
  if [ ! -f "$pw/package.json" ]; then
    echo "browser tests: installing playwright-core from npm into $nm"
    (cd "$nm" && npm install --no-save --no-audit --no-fund --no-package-lock \
       --prefix "$nm" playwright-core@1 >"$nm/npm-install.log" 2>&1) || {
      cat "$nm/npm-install.log" >&2
      echo "browser tests: npm could not install playwright-core (see above)" >&2
      exit 1
    }
  fi
  flock -u 9
fi

export PLAYWRIGHT_CORE="$pw" CHROMIUM="$chromium"
exec node "$src/tests/browser/test_browser.mjs"

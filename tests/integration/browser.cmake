# web/firmante.js and the demo portal in a real headless Chromium (Debian's
# /usr/bin/chromium driven by npm's playwright-core, installed into the build
# tree at the first run): pairing, an unpaired origin, one title and a batch
# of 20 verified with titulos verify, a denial, a locked PIN, the token pulled
# out, the agent stopped mid-way. Screenshots: build/browser-artifacts/.
# Skipped (77) only without chromium outside CI.
add_test(NAME browser_e2e COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/browser/run.sh)
set_tests_properties(browser_e2e PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  SKIP_RETURN_CODE 77
  TIMEOUT 300
  RUN_SERIAL TRUE)

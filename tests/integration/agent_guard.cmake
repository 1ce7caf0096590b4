# firmanted as the holder's guard: audit log and its verification, browser
# listener (Host, Origin, pairing, CORS), unattended policies and their daily
# cap, "final try" tokens, 413 while serving others, and a grep for the PIN
# over everything the run produced. Uses the p11shim call log to prove that
# refused requests never reach the token. Needs root (policy for uid 0).
add_test(NAME agent_guard
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_guard.py)
set_tests_properties(agent_guard PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  TIMEOUT 300
  RUN_SERIAL TRUE)

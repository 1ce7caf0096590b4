# firmanted against a fresh SoftHSM2 token: protocol, refusals, caps,
# SO_PEERCRED and socket permissions (runs agents as uid 65534 through
# setpriv, so it needs root).
add_test(NAME agent_integration
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_agent.py)
set_tests_properties(agent_integration PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  TIMEOUT 300
  RUN_SERIAL TRUE)

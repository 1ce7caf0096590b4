# firmanted's error details for people: cadena fields, wrongly typed JSON
# members, key-not-found (none or several), unloadable modules and missing
# pinentry programs (tests/integration/test_agent_polish.py).
add_test(NAME agent_polish
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_agent_polish.py)
set_tests_properties(agent_polish PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  TIMEOUT 300)

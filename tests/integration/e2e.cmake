# The demo as a test: token, agent, build, sign, verify, independent check.
add_test(NAME e2e_demo COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_e2e.sh)
set_tests_properties(e2e_demo PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 600
                     RUN_SERIAL TRUE)

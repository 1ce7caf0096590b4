# The independent title checker used by the demo and the end-to-end tests.
add_test(NAME check_titulo_oracle COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_check_titulo.sh)
set_tests_properties(check_titulo_oracle PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 120)

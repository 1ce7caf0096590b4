# titulos submit/status/results/cancel/report against the MET sandbox:
# a 300-title lot, SIGKILL at random moments (20+ runs), fault modes,
# credentials and TLS refusals, cancellation.
add_test(NAME met_integration
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_met.py)
set_tests_properties(met_integration PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 600)

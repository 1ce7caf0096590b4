# The MET sandbox (local stand-in for the DGP web service) and its own tests:
# lots, result XLS shape, title checks, cancellation, fault modes, HTTPS and HTTP.
add_test(NAME met_sandbox
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/met_sandbox/test_met_sandbox.py)
set_tests_properties(met_sandbox PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 300)

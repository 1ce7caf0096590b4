# firmante doctor asserted line by line: a fresh SoftHSM2 token, a running
# firmanted, modules fixed by the agent's configuration, stand-in pcscd
# socket and udev directory; then a broken setup (p11shim "final try", an
# expired certificate, no pcscd, no udev rules, the agent stopped).
add_test(NAME doctor_integration
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_doctor.py)
set_tests_properties(doctor_integration PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  LABELS "token"
  TIMEOUT 300)

# firmante import asks the .key password and the token PIN through pinentry.
add_test(NAME import_pinentry
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_import_pinentry.py)
set_tests_properties(import_pinentry PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  LABELS "token"
  TIMEOUT 300)

# Tokens in real life (issue 5): a real firmanted on two SoftHSM2 tokens
# through tests/p11shim: hung token -> token-timeout while the rest answers,
# session recovery without PIN loops, a 200-title run with a card reset and
# a removal/re-insertion under a new slot id.
add_test(NAME tokens_integration
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_tokens.py)
set_tests_properties(tokens_integration PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  LABELS "token"
  TIMEOUT 600
  RUN_SERIAL TRUE)

# udev/: rule syntax and every device of udev/README.md tagged uaccess.
add_test(NAME tokens_udev
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_tokens_udev.py)
set_tests_properties(tokens_udev PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" LABELS "token")

# firmante import of the SAT test FIEL (and refusal of the CSD) onto SoftHSM2.
add_test(NAME tokens_import
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_tokens_import.py)
set_tests_properties(tokens_import PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" LABELS "token")

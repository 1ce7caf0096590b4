# Two tokens, two 500-title sign-batch runs through tests/p11shim (10 ms per
# C_Sign): in parallel faster than one after the other (ratio printed).
add_test(NAME tokens_parallel
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_tokens_parallel.py)
set_tests_properties(tokens_parallel PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  LABELS "token"
  TIMEOUT 900
  RUN_SERIAL TRUE)

# GET /v1/events (long-poll) and sign-batch pausing when its token is pulled
# out, resuming when the same token is back under a new slot id (p11shim).
add_test(NAME tokens_hotplug
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_tokens_hotplug.py)
set_tests_properties(tokens_hotplug PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  LABELS "token"
  TIMEOUT 600
  RUN_SERIAL TRUE)

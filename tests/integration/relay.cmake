# firmante-nm driven with the browsers' native messaging framing against real
# agents: relayed keys, signature and batch; relay callers are browser callers
# (policies never apply, the holder decides, no approvals/pairings/events);
# refused messages; closing the pipe cancels a batch. Needs root (policy uid 0).
add_test(NAME relay_nm
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_relay.py)
set_tests_properties(relay_nm PROPERTIES
  ENVIRONMENT "${FIRMANTE_TEST_ENV}"
  TIMEOUT 300
  RUN_SERIAL TRUE)

# Fault drills (tests/drills/fault-drills.sh): disk full while titles are
# written, SIGKILL during a build, a locked and a corrupted state database.
add_test(NAME fault_drills
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/drills/fault-drills.sh $<TARGET_FILE:titulos>)
set_tests_properties(fault_drills PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 300
                     LABELS "drill")

# Agent SIGKILL mid-batch (tests/drills/agent-kill-drill.py): titulos sign of
# 300 titles, firmanted killed after a third of the signatures, restarted;
# the same command resumes, every title once with valid sellos.
add_test(NAME agent_kill_drill
         COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/drills/agent-kill-drill.py --titles 300)
set_tests_properties(agent_kill_drill PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 300
                     LABELS "drill")

# Load drill (tests/drills/load-drill.py): 64 clients on the Unix socket, 16
# on the browser listener and 4 slow ones for 120 s against a real agent.
# Under AddressSanitizer the agent's RSS is reported but not judged (the
# quarantine keeps freed memory); everything else is checked the same.
set(FIRMANTE_LOAD_DRILL_ARGS --seconds 120)
if(FIRMANTE_SANITIZE)
  list(APPEND FIRMANTE_LOAD_DRILL_ARGS --no-rss-bound)
endif()
add_test(NAME load_drill
         COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/drills/load-drill.py ${FIRMANTE_LOAD_DRILL_ARGS})
set_tests_properties(load_drill PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 600
                     LABELS "drill;load")

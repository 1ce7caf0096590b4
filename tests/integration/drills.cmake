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

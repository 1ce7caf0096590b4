# Fault drills (tests/drills/fault-drills.sh): disk full while titles are
# written, SIGKILL during a build, a locked and a corrupted state database.
add_test(NAME fault_drills
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/drills/fault-drills.sh $<TARGET_FILE:titulos>)
set_tests_properties(fault_drills PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 300
                     LABELS "drill")

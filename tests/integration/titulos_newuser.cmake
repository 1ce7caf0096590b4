# What a registrar's IT person runs into (bad CSV bytes and quoting,
# limits, unreadable files, a broken configuration, partial and stale
# batches, verify of directories and unsigned titles, FirmaResponsable
# numbered from 1, an agent socket that is not there): each case asserts
# the exit status and the sentence shown.
add_test(NAME titulos_newuser
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_titulos_newuser.sh
                 $<TARGET_FILE:titulos> $<TARGET_FILE:firmante> ${CMAKE_SOURCE_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/titulos-newuser)
set_tests_properties(titulos_newuser PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 120)

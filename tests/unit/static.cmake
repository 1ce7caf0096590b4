# Static checks (tests/static/static-check): cppcheck and clang-tidy with
# the checks chosen in .clang-tidy. Source-level, so only in the build
# without sanitizers (the ASan build would repeat the same answer).
if(NOT FIRMANTE_SANITIZE)
  find_program(FIRMANTE_CPPCHECK cppcheck)
  find_program(FIRMANTE_CLANG_TIDY clang-tidy)
  if(FIRMANTE_CPPCHECK)
    add_test(NAME static_cppcheck
             COMMAND ${CMAKE_SOURCE_DIR}/tests/static/static-check --build-dir ${CMAKE_BINARY_DIR} cppcheck)
    set_tests_properties(static_cppcheck PROPERTIES TIMEOUT 300 LABELS "static")
  endif()
  if(FIRMANTE_CLANG_TIDY)
    add_test(NAME static_clang_tidy
             COMMAND ${CMAKE_SOURCE_DIR}/tests/static/static-check --build-dir ${CMAKE_BINARY_DIR} clang-tidy)
    set_tests_properties(static_clang_tidy PROPERTIES TIMEOUT 900 LABELS "static")
  endif()
endif()

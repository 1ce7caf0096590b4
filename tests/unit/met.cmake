# MET pieces without a network: result workbook (the real DGP file), result
# ZIP, credentials file mode, profiles, ZIP lots, lot state transitions.
firmante_unit_test(test_met SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_met.c
                   LIBS firmante-met)
# The result workbook is read by titulos-result-reader (submitter/result-reader.h).
target_compile_definitions(test_met PRIVATE
  RESULT_READER="$<TARGET_FILE:titulos-result-reader>")
add_dependencies(test_met titulos-result-reader)

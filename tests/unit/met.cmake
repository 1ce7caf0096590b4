# MET pieces without a network: result workbook (the real DGP file), result
# ZIP, credentials file mode, profiles, ZIP lots, lot state transitions.
firmante_unit_test(test_met SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_met.c
                   LIBS firmante-met)

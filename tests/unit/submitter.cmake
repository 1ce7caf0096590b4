# Unit tests of the title room (submitter/).
firmante_unit_test(test_titulo SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_titulo.c
                   LIBS firmante-titulo)
firmante_unit_test(test_titulo_verify SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_titulo_verify.c
                   LIBS firmante-titulo)

# Client library tests (fake agent on a Unix socket) and error-code table tests.
firmante_unit_test(test_client SOURCES unit/test_client.c LIBS firmante-client Threads::Threads)
firmante_unit_test(test_errors SOURCES unit/test_errors.c LIBS firmante-common)

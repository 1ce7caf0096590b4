/*
 * Shared pieces of the fuzz targets (tests/fuzz/). Each target defines
 * LLVMFuzzerTestOneInput and may define LLVMFuzzerInitialize; it is linked
 * either with libFuzzer (FIRMANTE_FUZZ builds, clang) or with replay.c,
 * which runs the committed corpus once in every build.
 *
 * A target must never print on success and must abort() when a property
 * it checks does not hold, so that a finding is a crash.
 */
#ifndef FIRMANTE_FUZZ_H
#define FIRMANTE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* fuzz_fail - report a broken property and abort (a finding). */
#define fuzz_fail(...)                                                                   \
	do {                                                                             \
		fprintf(stderr, "fuzz: %s:%d: ", __FILE__, __LINE__);                    \
		fprintf(stderr, __VA_ARGS__);                                            \
		fputc('\n', stderr);                                                     \
		abort();                                                                 \
	} while (0)

/*
 * fuzz_memfile - put @size bytes in an anonymous in-memory file (memfd) and
 * give a path that opens it ("/proc/self/fd/N"), for APIs that take a path.
 * @path: receives the path (at least 64 bytes).
 * Returns the descriptor (close it when done) or -1.
 */
int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t path_size);

/* fuzz_write_file - create or replace @path (mode 0600) with @size bytes.
 * Returns 0 or -1. */
int fuzz_write_file(const char *path, const uint8_t *data, size_t size);

/* fuzz_private_path - @name inside a private directory (0700) made at the
 * first call and removed with its files at exit. Returns @buf. */
char *fuzz_private_path(const char *name, char *buf, size_t size);

/* fuzz_source_path - "@FIRMANTE_SOURCE_DIR/@rel" into @buf. Returns @buf. */
char *fuzz_source_path(const char *rel, char *buf, size_t size);

#endif

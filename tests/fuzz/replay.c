/*
 * Runs a fuzz target's inputs once, without libFuzzer: every file named on
 * the command line, and every regular file in every directory named. Used
 * by CTest in every build (gcc, ASan) so that the committed corpus and the
 * regression inputs stay green even where libFuzzer is not available.
 * Exit status: 0 when all inputs ran, 1 when an input could not be read
 * (a finding aborts instead).
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "firmante/util.h"
#include "fuzz.h"

/* Inputs larger than this are a corpus mistake, not something to replay. */
#define REPLAY_MAX_INPUT (8u * 1024u * 1024u)

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static int run_file(const char *path, unsigned long *count)
{
	char *data = NULL;
	uint8_t *exact;
	size_t len = 0;

	if (fm_read_file(path, REPLAY_MAX_INPUT, &data, &len) != 0) {
		fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
		return 1;
	}
	/* An exact-size copy, as libFuzzer gives: a read past the end of the
	 * input is then a sanitizer report here too. */
	exact = malloc(len ? len : 1);
	if (!exact) {
		free(data);
		fprintf(stderr, "replay: out of memory for %s\n", path);
		return 1;
	}
	memcpy(exact, data, len);
	free(data);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	(*count)++;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, unsigned long *count)
{
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int bad = 0;
	DIR *d = opendir(dir);

	if (!d) {
		fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
		return 1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			char **grown = realloc(names, ncap * sizeof(*names));

			if (!grown) {
				bad = 1;
				break;
			}
			names = grown;
			cap = ncap;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			bad = 1;
			break;
		}
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (!bad && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			bad |= run_file(path, count);
		free(names[i]);
	}
	free(names);
	return bad;
}

int main(int argc, char **argv)
{
	unsigned long count = 0;
	int bad = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			bad = 1;
		} else if (S_ISDIR(st.st_mode)) {
			bad |= run_dir(argv[i], &count);
		} else {
			bad |= run_file(argv[i], &count);
		}
	}
	printf("replay: %lu inputs\n", count);
	return bad;
}

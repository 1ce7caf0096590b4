/*
 * bench-lote: ZIP lot creation as titulos submit does it (met_lote_build:
 * deflate, temporary file renamed into place, listing and CRCs checked on
 * re-open), without the upload.
 *
 *   bench-lote --out DIR --titles N [--lot-size N] FILE...
 *     Builds ceil(N / lot-size) lots of the signed titles FILE... (taken in
 *     turn; each entry gets its own folio BENCH-L<n>, so FILEs may repeat),
 *     each lot DIR/lote.zip replacing the previous one. Prints JSON:
 *     {"titles":N,"lots":L,"seconds":wall,"rate":titles/s,"cpu_s":..,
 *      "maxrss_kib":..}
 *
 * Exit status: 0 done, 1 a lot could not be built (message on stderr),
 * 2 usage. Test tool only.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "met.h"

#define MAX_TITLES 10000000UL

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || !end || *end || end == s || v == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

static void usage(FILE *o)
{
	fprintf(o, "Usage: bench-lote --out DIR --titles N [--lot-size N] FILE...\n"
		   "Builds ZIP lots of the signed titles FILE... (met_lote_build) and prints\n"
		   "JSON with titles/s and peak RSS. Test tool only.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "titles", required_argument, NULL, 'n' },
		{ "lot-size", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL;
	unsigned long titles = 0, lot = 100;
	int c;
	while ((c = getopt_long(argc, argv, "o:n:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'n':
			if (parse_ulong(optarg, MAX_TITLES, &titles)) {
				fprintf(stderr, "bench-lote: --titles 1..%lu\n", MAX_TITLES);
				return 2;
			}
			break;
		case 'l':
			if (parse_ulong(optarg, MET_MAX_LOT_TITLES, &lot)) {
				fprintf(stderr, "bench-lote: --lot-size 1..%u\n", MET_MAX_LOT_TITLES);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!out || !titles || optind >= argc) {
		usage(stderr);
		return 2;
	}
	size_t nfiles = (size_t)(argc - optind);
	int rc = 1;
	char zip[4096], sha[65];
	struct met_lote_item *items = calloc(lot, sizeof(*items));
	char (*folios)[32] = calloc(lot, sizeof(*folios));
	if (!items || !folios) {
		fprintf(stderr, "bench-lote: out of memory\n");
		goto out;
	}
	if (snprintf(zip, sizeof(zip), "%s/lote.zip", out) >= (int)sizeof(zip)) {
		fprintf(stderr, "bench-lote: --out path too long\n");
		goto out;
	}
	double start = now_s();
	unsigned long done = 0, lots = 0;
	while (done < titles) {
		size_t n = 0;
		for (; n < lot && done + n < titles; n++) {
			snprintf(folios[n], sizeof(folios[n]), "BENCH-L%lu", done + n);
			items[n].folio = folios[n];
			items[n].path = argv[optind + (int)((done + n) % nfiles)];
		}
		struct met_error err = { 0 };
		if (met_lote_build(zip, items, n, sha, &err) != 0) {
			fprintf(stderr, "bench-lote: lot %lu: %s\n", lots + 1, err.message);
			goto out;
		}
		done += n;
		lots++;
	}
	double wall = now_s() - start;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"titles\":%lu,\"lots\":%lu,\"seconds\":%.6f,\"rate\":%.3f,\"cpu_s\":%.6f,"
	       "\"maxrss_kib\":%ld}\n",
	       done, lots, wall, (double)done / wall,
	       (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
	       ru.ru_maxrss);
	rc = 0;
out:
	free(items);
	free(folios);
	return rc;
}

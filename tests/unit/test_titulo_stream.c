/*
 * Large batches in flat memory: fm_batch (one sync for a batch of new
 * files, include/firmante/util.h), the CSV read in chunks (te_csv_each) and
 * the builder's two readings (titulo_build_check / titulo_build_each).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "../../submitter/te-csv.h"

#define CONF FIRMANTE_SOURCE_DIR "/examples/institucion.conf"
#define CSV FIRMANTE_SOURCE_DIR "/examples/egresados.csv"

static char g_dir[64];
static titulo_catalogos *g_cat;
static struct titulo_config *g_conf;

static int setup(void **state)
{
	(void)state;
	struct titulo_error err;
	if (titulo_catalogos_load(NULL, &g_cat, &err) != 0)
		return -1;
	struct titulo_findings f = { 0 };
	if (titulo_config_load(CONF, g_cat, &g_conf, &f) != 0)
		return -1;
	titulo_findings_clear(&f);
	snprintf(g_dir, sizeof(g_dir), "/tmp/test_titulo_stream.XXXXXX");
	return mkdtemp(g_dir) ? 0 : -1;
}

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			remove_tree(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static int teardown(void **state)
{
	(void)state;
	titulo_config_free(g_conf);
	titulo_catalogos_free(g_cat);
	remove_tree(g_dir);
	return 0;
}

/* A new empty directory under g_dir. */
static const char *subdir(const char *name)
{
	static char p[256];
	snprintf(p, sizeof(p), "%s/%s", g_dir, name);
	remove_tree(p);
	assert_int_equal(mkdir(p, 0700), 0);
	return p;
}

/* Entries of @dir other than . and .., all names included. */
static size_t entries(const char *dir)
{
	size_t n = 0;
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static char *slurp(const char *path, size_t *len)
{
	char *text = NULL;
	int rc = fm_read_file(path, 1u << 26, &text, len);
	assert_int_equal(rc, 0);
	assert_non_null(text);
	return text;
}

/* ---- fm_batch ---------------------------------------------------------- */

/* Nothing under a final name before the commit; after it, every file with
 * its bytes and the batch's mode, and no temporary left. */
static void test_batch_commit(void **state)
{
	(void)state;
	const char *d = subdir("commit");
	struct fm_batch *b = NULL;
	assert_int_equal(fm_batch_open(d, 0640, &b), 0);
	assert_int_equal(fm_batch_add(b, "a.xml", "alpha", 5), 0);
	assert_int_equal(fm_batch_add(b, "b.xml", "", 0), 0);
	assert_int_equal(fm_batch_pending(b), 2);
	char p[512];
	snprintf(p, sizeof(p), "%s/a.xml", d);
	assert_int_equal(access(p, F_OK), -1); /* not yet under its name */
	assert_int_equal(entries(d), 2);      /* the two temporaries */
	size_t renamed = 99;
	assert_int_equal(fm_batch_commit(b, &renamed), 0);
	assert_int_equal(renamed, 2);
	assert_int_equal(fm_batch_pending(b), 0);
	fm_batch_free(b);
	assert_int_equal(entries(d), 2);
	size_t len = 0;
	char *s = slurp(p, &len);
	assert_int_equal(len, 5);
	assert_memory_equal(s, "alpha", 5);
	free(s);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	snprintf(p, sizeof(p), "%s/b.xml", d);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 0);
}

/* A batch released without a commit leaves nothing; so does one whose
 * third file cannot be created (the earlier two are removed too). */
static void test_batch_abort_and_failure(void **state)
{
	(void)state;
	const char *d = subdir("abort");
	struct fm_batch *b = NULL;
	assert_int_equal(fm_batch_open(d, 0644, &b), 0);
	assert_int_equal(fm_batch_add(b, "a.xml", "x", 1), 0);
	assert_int_equal(fm_batch_add(b, "b.xml", "y", 1), 0);
	fm_batch_free(b);
	assert_int_equal(entries(d), 0);

	/* a directory where the third file's temporary goes: creating it fails */
	assert_int_equal(fm_batch_open(d, 0644, &b), 0);
	assert_int_equal(fm_batch_add(b, "a.xml", "x", 1), 0);
	assert_int_equal(fm_batch_add(b, "b.xml", "y", 1), 0);
	char p[512];
	snprintf(p, sizeof(p), "%s/.c.xml.%ld.fmtmp", d, (long)getpid());
	assert_int_equal(mkdir(p, 0700), 0);
	errno = 0;
	assert_int_equal(fm_batch_add(b, "c.xml", "z", 1), FIRMANTE_E_IO);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(fm_batch_pending(b), 2);
	fm_batch_free(b);
	assert_int_equal(rmdir(p), 0);
	assert_int_equal(entries(d), 0);

	/* the same name twice in one batch is refused, the first stays */
	assert_int_equal(fm_batch_open(d, 0644, &b), 0);
	assert_int_equal(fm_batch_add(b, "a.xml", "x", 1), 0);
	assert_int_equal(fm_batch_add(b, "a.xml", "y", 1), FIRMANTE_E_IO);
	assert_int_equal(fm_batch_commit(b, NULL), 0);
	fm_batch_free(b);
	size_t len = 0;
	snprintf(p, sizeof(p), "%s/a.xml", d);
	char *s = slurp(p, &len);
	assert_int_equal(len, 1);
	assert_int_equal(s[0], 'x');
	free(s);
}

static void test_batch_names(void **state)
{
	(void)state;
	const char *d = subdir("names");
	struct fm_batch *b = NULL;
	assert_int_equal(fm_batch_open(d, 0644, &b), 0);
	assert_int_equal(fm_batch_add(b, "", "x", 1), FIRMANTE_E_INVALID);
	assert_int_equal(fm_batch_add(b, ".hidden", "x", 1), FIRMANTE_E_INVALID);
	assert_int_equal(fm_batch_add(b, "../up.xml", "x", 1), FIRMANTE_E_INVALID);
	assert_int_equal(fm_batch_add(b, "a/b.xml", "x", 1), FIRMANTE_E_INVALID);
	char longname[FM_BATCH_MAX_NAME + 2];
	memset(longname, 'A', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(fm_batch_add(b, longname, "x", 1), FIRMANTE_E_INVALID);
	longname[FM_BATCH_MAX_NAME] = '\0';
	assert_int_equal(fm_batch_add(b, longname, "x", 1), 0);
	assert_int_equal(fm_batch_commit(b, NULL), 0);
	fm_batch_free(b);
	assert_int_equal(entries(d), 1);
	errno = 0;
	assert_int_equal(fm_batch_open("/nonexistent/dir", 0644, &b), FIRMANTE_E_IO);
	assert_int_equal(errno, ENOENT);
}

/* A temporary of a process that no longer runs is removed when a batch
 * opens the directory; one of a running process, and files of other
 * patterns, are kept. */
static void test_batch_stale(void **state)
{
	(void)state;
	const char *d = subdir("stale");
	char dead[512], alive[512], other[512], odd[512];
	/* PIDs never exceed 2^22 on Linux (pid_max): 999999999 runs nowhere */
	snprintf(dead, sizeof(dead), "%s/.T-1.xml.999999999.fmtmp", d);
	snprintf(alive, sizeof(alive), "%s/.T-2.xml.%ld.fmtmp", d, (long)getppid());
	snprintf(other, sizeof(other), "%s/.T-3.xml.partial", d);
	snprintf(odd, sizeof(odd), "%s/T-4.xml.999999999.fmtmp", d);
	write_file(dead, "p", 1);
	write_file(alive, "p", 1);
	write_file(other, "p", 1);
	write_file(odd, "p", 1);
	struct fm_batch *b = NULL;
	assert_int_equal(fm_batch_open(d, 0644, &b), 0);
	fm_batch_free(b);
	assert_int_equal(access(dead, F_OK), -1);
	assert_int_equal(access(alive, F_OK), 0);
	assert_int_equal(access(other, F_OK), 0);
	assert_int_equal(access(odd, F_OK), 0);
}

/* ---- the CSV read in chunks ------------------------------------------ */

struct rows {
	unsigned long records;
	char last[4][128]; /* fields of the last record (first 4) */
	char long_field[TE_CSV_CHUNK + 64];
	unsigned long stop_at;
};

static int on_record(void *ctx, unsigned long record, struct te_csv_row *row)
{
	struct rows *r = ctx;
	assert_int_equal(record, r->records + 1);
	r->records = record;
	for (size_t j = 0; j < row->n && j < 4; j++) {
		if (strlen(row->f[j]) >= sizeof(r->last[j]))
			snprintf(r->long_field, sizeof(r->long_field), "%s", row->f[j]);
		snprintf(r->last[j], sizeof(r->last[j]), "%.120s", row->f[j]);
	}
	return r->stop_at && record == r->stop_at ? 12345 : 0;
}

/* "h1,h2\n" then a field that puts the two bytes of an 'É' on both sides
 * of the first chunk boundary (UTF-8), or a Windows-1252 'É' past it. */
static size_t straddle_file(char *buf, size_t size, int cp1252)
{
	const char *head = "h1,h2\n";
	size_t n = strlen(head);
	memcpy(buf, head, n);
	size_t fill = TE_CSV_CHUNK - 1 - n - 2; /* "x," then the padding */
	memcpy(buf + n, "x,", 2);
	n += 2;
	memset(buf + n, 'a', fill);
	n += fill;
	assert_int_equal(n, TE_CSV_CHUNK - 1);
	const char *tail = cp1252 ? "\xC9Z\nlast,\xD1" "o\n" : "\xC3\x89Z\nlast,\xC3\x91o\n";
	size_t tl = strlen(tail);
	assert_true(n + tl < size);
	memcpy(buf + n, tail, tl);
	return n + tl;
}

static void test_csv_chunks(void **state)
{
	(void)state;
	static char buf[TE_CSV_CHUNK + 256];
	static struct rows r;
	char why[256], p[512];
	snprintf(p, sizeof(p), "%s/straddle.csv", g_dir);

	for (int cp = 0; cp < 2; cp++) {
		size_t n = straddle_file(buf, sizeof(buf), cp);
		write_file(p, buf, n);
		memset(&r, 0, sizeof(r));
		struct te_csv_info info = { 0 };
		assert_int_equal(te_csv_each(p, 1u << 20, 100, TE_CSV_DETECT, on_record, &r, &info,
					     why, sizeof(why), NULL),
				 0);
		assert_int_equal(info.converted, cp);
		assert_int_equal(info.delim, ',');
		assert_int_equal(info.records, 3);
		assert_int_equal(r.records, 3);
		size_t fl = strlen(r.long_field);
		assert_int_equal(fl, TE_CSV_CHUNK - 1 - 8 + 3); /* the padding, É (2 bytes), Z */
		assert_string_equal(r.long_field + fl - 3, "\xC3\x89Z");
		assert_string_equal(r.last[0], "last");
		assert_string_equal(r.last[1], "\xC3\x91o");
	}

	/* a byte Windows-1252 does not define, past the first chunk: no record
	 * is handed over and the line is named */
	size_t n = straddle_file(buf, sizeof(buf), 1);
	buf[n - 2] = '\x81';
	write_file(p, buf, n);
	memset(&r, 0, sizeof(r));
	assert_int_equal(te_csv_each(p, 1u << 20, 100, TE_CSV_DETECT, on_record, &r, NULL, why,
				     sizeof(why), NULL),
			 FIRMANTE_E_BAD_DOCUMENT);
	assert_int_equal(r.records, 0);
	assert_non_null(strstr(why, "line 3 holds byte 0x81"));

	/* the callback's value stops the reading and is returned */
	n = straddle_file(buf, sizeof(buf), 0);
	write_file(p, buf, n);
	memset(&r, 0, sizeof(r));
	r.stop_at = 2;
	assert_int_equal(te_csv_each(p, 1u << 20, 100, TE_CSV_DETECT, on_record, &r, NULL, why,
				     sizeof(why), NULL),
			 12345);
	assert_int_equal(r.records, 2);

	/* over the size limit: refused before any record */
	memset(&r, 0, sizeof(r));
	assert_int_equal(te_csv_each(p, TE_CSV_CHUNK, 100, TE_CSV_DETECT, on_record, &r, NULL,
				     why, sizeof(why), NULL),
			 FIRMANTE_E_TOO_LARGE);
	assert_int_equal(r.records, 0);

	/* a file ending inside a UTF-8 sequence is not UTF-8 */
	write_file(p, "a,b\nc,\xC3", 7);
	assert_int_equal(te_csv_each(p, 1u << 20, 100, 0, on_record, &r, NULL, why, sizeof(why),
				     NULL),
			 FIRMANTE_E_BAD_DOCUMENT);
}

/* ---- the builder's two readings ----------------------------------------- */

struct got {
	size_t n;
	unsigned long rows[32];
	char folios[32][48];
	int stop_after;
};

static int on_title(void *ctx, const char *folio, unsigned long row, titulo **t)
{
	struct got *g = ctx;
	assert_non_null(*t);
	assert_true(g->n < 32);
	assert_string_equal(titulo_attr(*t, "TituloElectronico", "folioControl"), folio);
	g->rows[g->n] = row;
	snprintf(g->folios[g->n], sizeof(g->folios[0]), "%s", folio);
	g->n++;
	return g->stop_after && (int)g->n == g->stop_after ? FIRMANTE_E_IO : 0;
}

static void test_build_two_readings(void **state)
{
	(void)state;
	struct titulo_findings f = { 0 };
	struct titulo_build *b = NULL;
	struct titulo_build_options o = { .today = "2025-12-31" };
	assert_int_equal(titulo_build_check(g_conf, g_cat, CSV, &o, &b, &f), 0);
	assert_int_equal(f.errors, 0);
	assert_int_equal(titulo_build_count(b), 11);
	size_t ns = 99;
	titulo_build_skipped(b, &ns);
	assert_int_equal(ns, 0);
	assert_true(titulo_build_has_folio(b, "UVC-2025-0001"));
	assert_true(titulo_build_has_folio(b, "UVC-2025-0011"));
	assert_false(titulo_build_has_folio(b, "UVC-2025-0012"));
	static struct got g;
	memset(&g, 0, sizeof(g));
	assert_int_equal(titulo_build_each(b, on_title, &g), 0);
	assert_int_equal(g.n, 11);
	for (size_t i = 0; i < g.n; i++) {
		char want[48];
		snprintf(want, sizeof(want), "UVC-2025-%04zu", i + 1);
		assert_string_equal(g.folios[i], want);
		assert_int_equal(g.rows[i], i + 2);
	}
	/* the callback's error stops the second reading */
	memset(&g, 0, sizeof(g));
	g.stop_after = 3;
	assert_int_equal(titulo_build_each(b, on_title, &g), FIRMANTE_E_IO);
	assert_int_equal(g.n, 3);
	titulo_build_free(b);
	titulo_findings_clear(&f);
}

/* A file changed between the readings: the second refuses it before
 * handing over any title. */
static void test_build_file_changed(void **state)
{
	(void)state;
	char p[512];
	snprintf(p, sizeof(p), "%s/changed.csv", g_dir);
	size_t len = 0;
	char *csv = slurp(CSV, &len);
	write_file(p, csv, len);
	struct titulo_findings f = { 0 };
	struct titulo_build *b = NULL;
	struct titulo_build_options o = { .today = "2025-12-31" };
	assert_int_equal(titulo_build_check(g_conf, g_cat, p, &o, &b, &f), 0);
	char *at = strstr(csv, "UVC-2025-0011");
	assert_non_null(at);
	at[12] = '2'; /* UVC-2025-0012: same length, other bytes */
	write_file(p, csv, len);
	static struct got g;
	memset(&g, 0, sizeof(g));
	assert_int_equal(titulo_build_each(b, on_title, &g), FIRMANTE_E_IO);
	assert_int_equal(g.n, 0);
	titulo_build_free(b);
	titulo_findings_clear(&f);
	free(csv);
}

/* An error in the very last row: all findings, nothing to build. */
static void test_build_last_row_bad(void **state)
{
	(void)state;
	char p[512];
	snprintf(p, sizeof(p), "%s/lastbad.csv", g_dir);
	size_t len = 0;
	char *csv = slurp(CSV, &len);
	char *last = csv + len - 1;
	while (last > csv && last[-1] != '\n')
		last--;
	char *comma = strchr(last, ',');
	assert_non_null(comma);
	comma[1] = 'X'; /* a CURP that fails its checks */
	write_file(p, csv, len);
	struct titulo_findings f = { 0 };
	struct titulo_build *b = NULL;
	struct titulo_build_options o = { .today = "2025-12-31" };
	assert_int_equal(titulo_build_check(g_conf, g_cat, p, &o, &b, &f), FIRMANTE_E_INVALID);
	assert_null(b);
	assert_true(f.errors >= 1);
	assert_int_equal(f.items[f.count - 1].row, 12);
	titulo_findings_clear(&f);
	/* with --skip-invalid the other ten are built and row 12 is listed */
	o.flags = TITULO_BUILD_SKIP_INVALID;
	assert_int_equal(titulo_build_check(g_conf, g_cat, p, &o, &b, &f), 0);
	size_t ns = 0;
	const unsigned long *sk = titulo_build_skipped(b, &ns);
	assert_int_equal(ns, 1);
	assert_int_equal(sk[0], 12);
	assert_int_equal(titulo_build_count(b), 10);
	assert_false(titulo_build_has_folio(b, "UVC-2025-0011"));
	static struct got g;
	memset(&g, 0, sizeof(g));
	assert_int_equal(titulo_build_each(b, on_title, &g), 0);
	assert_int_equal(g.n, 10);
	titulo_build_free(b);
	titulo_findings_clear(&f);
	free(csv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batch_commit),
		cmocka_unit_test(test_batch_abort_and_failure),
		cmocka_unit_test(test_batch_names),
		cmocka_unit_test(test_batch_stale),
		cmocka_unit_test(test_csv_chunks),
		cmocka_unit_test(test_build_two_readings),
		cmocka_unit_test(test_build_file_changed),
		cmocka_unit_test(test_build_last_row_bad),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

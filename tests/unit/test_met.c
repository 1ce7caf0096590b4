/*
 * The MET pieces without a network (submitter/met.h, submitter/state.h):
 * the real DGP result file read by column name; the result ZIP; the
 * credentials file mode rule; profile refusals; ZIP lots and their listing;
 * the lot state's transitions, including "previamente registrado" for a
 * title we uploaded ourselves and the recovery of an interrupted upload.
 */
#include <fcntl.h>
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
#include <zip.h>

#include "firmante/protocol.h"
#include "firmante/util.h"
#include "met.h"
#include "result-reader.h"
#include "state.h"

#define RESULT_XLS FIRMANTE_SHARED_DIR "/spec/examples/met-result-lote257945.xls"
#define RESULT_ZIP FIRMANTE_SHARED_DIR "/spec/examples/met-result-lote257945.zip"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_met.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	static const char *const readers[] = { "crash.sh", "hang.sh", "garbage.sh", "fail.sh",
					       "fds.sh" };
	for (size_t i = 0; i < sizeof(readers) / sizeof(readers[0]); i++) {
		char p[400];
		snprintf(p, sizeof(p), "%s/%s", tmpdir, readers[i]);
		unlink(p);
	}
	snprintf(cmd, sizeof(cmd), "%s", tmpdir);
	/* remove the files this test wrote, then the directory */
	static const char *const names[] = { "c644", "c600", "met.conf", "lote.zip", "bad.zip",
					     "state.db", "state.db-wal", "state.db-shm" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char p[400];
		snprintf(p, sizeof(p), "%s/%s", tmpdir, names[i]);
		unlink(p);
	}
	for (int i = 0; i < 3; i++) {
		char p[400];
		snprintf(p, sizeof(p), "%s/t%d.xml", tmpdir, i);
		unlink(p);
	}
	rmdir(cmd);
	return 0;
}

static void path_in(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", tmpdir, name);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
	char p[400];
	path_in(p, sizeof(p), name);
	unlink(p);
	assert_int_equal(fm_write_file_atomic(p, text, strlen(text), mode), 0);
	chmod(p, mode);
}

/* The real DGP file: one row, read by header name, ESTATUS a number. */
static void test_real_result_xls(void **state)
{
	(void)state;
	struct met_result_row *rows = NULL;
	size_t n = 0;
	struct met_error e = { 0 };
	assert_int_equal(met_result_read_xls(RESULT_XLS, &rows, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].archivo, "abc.xml");
	assert_int_equal(rows[0].estatus, 2);
	assert_string_equal(rows[0].descripcion, "Folio de control previamente registrado: 0001");
	assert_string_equal(rows[0].folio, "0001");
	free(rows);
}

static void test_real_result_zip(void **state)
{
	(void)state;
	char *zip = NULL;
	size_t len = 0;
	struct met_result_row *rows = NULL;
	size_t n = 0;
	struct met_error e = { 0 };
	assert_int_equal(fm_read_file(RESULT_ZIP, 1 << 20, &zip, &len), 0);
	assert_int_equal(met_result_read_zip((uint8_t *)zip, len, "257945", &rows, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].folio, "0001");
	free(rows);
	rows = NULL;
	/* the entry must be named after the lot asked for */
	assert_int_equal(met_result_read_zip((uint8_t *)zip, len, "1", &rows, &n, &e),
			 FIRMANTE_E_INVALID);
	assert_non_null(strstr(e.message, "ResultadoCargaTitulos1.xls"));
	/* a damaged ZIP is refused, not half-read */
	zip[len / 2] ^= 0x55;
	zip[len / 2 + 1] ^= 0x55;
	assert_int_not_equal(met_result_read_zip((uint8_t *)zip, len, "257945", &rows, &n, &e), 0);
	assert_null(rows);
	free(zip);
	/* not a workbook at all */
	assert_int_equal(met_result_read_xls(RESULT_ZIP, &rows, &n, &e), FIRMANTE_E_INVALID);
}

/* A stand-in reader program: a shell script with @body. */
static void reader_script(char *path, size_t size, const char *name, const char *body)
{
	char text[1024];
	path_in(path, size, name);
	snprintf(text, sizeof(text), "#!/bin/sh\n%s\n", body);
	unlink(path);
	assert_int_equal(fm_write_file_atomic(path, text, strlen(text), 0700), 0);
	chmod(path, 0700);
}

/* The reader crashes, hangs, answers garbage or fails: each is an error of
 * that one file, with a message, and titulos goes on. */
static void test_result_reader_faults(void **state)
{
	(void)state;
	char reader[400];
	struct met_result_row *rows = NULL;
	size_t n = 0;
	struct met_error e = { 0 };

	reader_script(reader, sizeof(reader), "crash.sh", "kill -SEGV $$");
	assert_int_equal(met_result_read_xls_with(reader, 10000, RESULT_XLS, "lot 7", &rows, &n,
						  &e), FIRMANTE_E_INVALID);
	assert_null(rows);
	assert_non_null(strstr(e.message, "lot 7: the result reader stopped on signal 11"));

	memset(&e, 0, sizeof(e));
	reader_script(reader, sizeof(reader), "hang.sh", "exec sleep 30");
	assert_int_equal(met_result_read_xls_with(reader, 300, RESULT_XLS, "lot 7", &rows, &n,
						  &e), FIRMANTE_E_TIMEOUT);
	assert_null(rows);
	assert_non_null(strstr(e.message, "did not finish"));

	memset(&e, 0, sizeof(e));
	reader_script(reader, sizeof(reader), "garbage.sh",
		      "printf '{\"rows\":[{\"archivo\":\"a.xml\",\"estatus\":3,"
		      "\"descripcion\":\"d\",\"folio\":\"f\"}]}'");
	assert_int_equal(met_result_read_xls_with(reader, 10000, RESULT_XLS, "lot 7", &rows, &n,
						  &e), FIRMANTE_E_INVALID);
	assert_null(rows);
	assert_non_null(strstr(e.message, "row 1 is malformed"));

	memset(&e, 0, sizeof(e));
	reader_script(reader, sizeof(reader), "fail.sh", "echo '{\"rows\":[]}'; exit 3");
	assert_int_equal(met_result_read_xls_with(reader, 10000, RESULT_XLS, "lot 7", &rows, &n,
						  &e), FIRMANTE_E_INVALID);
	assert_non_null(strstr(e.message, "exit status 3"));

	/* nothing of titulos is open in the reader but its standard streams */
	int fd = open(RESULT_XLS, O_RDONLY); /* no O_CLOEXEC on purpose */
	assert_true(fd > 2);
	char body[400];
	snprintf(body, sizeof(body),
		 "if [ -e /proc/$$/fd/%d ]; then f=leaked; else f=closed; fi\n"
		 "printf '{\"rows\":[{\"archivo\":\"a.xml\",\"estatus\":1,\"descripcion\":\"d\","
		 "\"folio\":\"%%s\"}]}' $f", fd);
	reader_script(reader, sizeof(reader), "fds.sh", body);
	assert_int_equal(met_result_read_xls_with(reader, 10000, RESULT_XLS, "lot 7", &rows, &n,
						  &e), 0);
	close(fd);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].folio, "closed");
	free(rows);
}

/* The parent's check of the reader's answer. */
static void test_result_answer(void **state)
{
	(void)state;
	struct met_result_row *rows = NULL;
	size_t n = 0;
	struct met_error e = { 0 };
	static const char ok[] = "{\"rows\":[{\"archivo\":\"x.xml\",\"estatus\":2,"
				 "\"descripcion\":\"No registrado\",\"folio\":\"F-1\"}]}";
	assert_int_equal(met_result_parse_answer(ok, strlen(ok), "L", &rows, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].estatus, 2);
	assert_string_equal(rows[0].folio, "F-1");
	free(rows);
	rows = NULL;
	static const char *const bad[] = {
		"",
		"[]",
		"{\"rows\":{}}",
		"{\"rows\":[],\"extra\":1}",
		"{\"rows\":[{\"archivo\":\"x\",\"estatus\":\"1\",\"descripcion\":\"\",\"folio\":\"\"}]}",
		"{\"rows\":[{\"archivo\":\"x\",\"estatus\":1,\"descripcion\":\"\"}]}",
		"{\"rows\":[{\"archivo\":\"x\\u0000y\",\"estatus\":1,\"descripcion\":\"\",\"folio\":\"\"}]}",
		"{\"error\":\"invalid\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&e, 0, sizeof(e));
		assert_int_equal(met_result_parse_answer(bad[i], strlen(bad[i]), "L", &rows, &n, &e),
				 FIRMANTE_E_INVALID);
		assert_null(rows);
		assert_true(e.message[0] == 'L');
	}
	/* a field one byte longer than its place in struct met_result_row */
	char big[600];
	memset(&e, 0, sizeof(e));
	snprintf(big, sizeof(big), "{\"rows\":[{\"archivo\":\"%0256d\",\"estatus\":1,"
				   "\"descripcion\":\"\",\"folio\":\"\"}]}", 0);
	assert_int_equal(met_result_parse_answer(big, strlen(big), "L", &rows, &n, &e),
			 FIRMANTE_E_INVALID);
	/* the reader's own refusals keep their meaning */
	static const char tl[] = "{\"error\":\"too-large\",\"message\":\"more than 20000 rows\"}";
	assert_int_equal(met_result_parse_answer(tl, strlen(tl), "L", &rows, &n, &e),
			 FIRMANTE_E_TOO_LARGE);
	assert_string_equal(e.message, "L: more than 20000 rows");
}

static void test_credentials_mode(void **state)
{
	(void)state;
	char p[400], u[MET_MAX_FIELD] = "", pw[MET_MAX_FIELD] = "";
	struct met_error e = { 0 };
	write_file("c644", "usuario = u1\npassword = secreto\n", 0644);
	path_in(p, sizeof(p), "c644");
	assert_int_equal(met_credentials_load(p, u, pw, &e), FIRMANTE_E_FORBIDDEN);
	assert_non_null(strstr(e.message, "0644"));
	assert_non_null(strstr(e.message, "chmod 600"));
	assert_string_equal(u, "");
	write_file("c600", "usuario = u1\npassword = secreto\n", 0600);
	path_in(p, sizeof(p), "c600");
	assert_int_equal(met_credentials_load(p, u, pw, &e), 0);
	assert_string_equal(u, "u1");
	assert_string_equal(pw, "secreto");
}

static void test_profile_rules(void **state)
{
	(void)state;
	char p[400], text[800];
	struct met_profile prof;
	struct met_error e = { 0 };
	path_in(p, sizeof(p), "met.conf");
	write_file("met.conf", "[met]\nprofile = sandbox\nurl = http://127.0.0.1:1/\n", 0600);
	assert_int_equal(met_profile_load(p, &prof, &e), FIRMANTE_E_CONFIG);
	assert_non_null(strstr(e.message, "only https://"));
	write_file("met.conf", "[met]\nprofile = qa\npassword = x\n", 0600);
	assert_int_equal(met_profile_load(p, &prof, &e), FIRMANTE_E_CONFIG);
	assert_non_null(strstr(e.message, "credentials go in the file"));
	write_file("met.conf", "[met]\nprofile = pruebas\n", 0600);
	assert_int_equal(met_profile_load(p, &prof, &e), FIRMANTE_E_CONFIG);
	/* qa gets the DGP's QA address; credentials from the 0600 file */
	snprintf(text, sizeof(text), "[met]\nprofile = qa\ncredentials = c600\nlot-size = 7\n");
	write_file("met.conf", text, 0600);
	assert_int_equal(met_profile_load(p, &prof, &e), 0);
	assert_string_equal(prof.url, MET_URL_QA);
	assert_string_equal(prof.usuario, "u1");
	assert_int_equal(prof.lot_size, 7);
	met_profile_clear(&prof);
	assert_string_equal(prof.password, "");
	/* a 0644 credentials file makes the whole profile unusable */
	write_file("met.conf", "[met]\nprofile = produccion\ncredentials = c644\n", 0600);
	assert_int_equal(met_profile_load(p, &prof, &e), FIRMANTE_E_FORBIDDEN);
	assert_true(met_motivo_valid("R3") && met_motivo_valid("C1"));
	assert_false(met_motivo_valid("R6") || met_motivo_valid("3") || met_motivo_valid(NULL));
}

static void test_lote(void **state)
{
	(void)state;
	char zp[400], t0[400], t1[400], sha[65];
	struct met_error e = { 0 };
	write_file("t0.xml", "<a/>", 0644);
	write_file("t1.xml", "<b/>", 0644);
	path_in(zp, sizeof(zp), "lote.zip");
	path_in(t0, sizeof(t0), "t0.xml");
	path_in(t1, sizeof(t1), "t1.xml");
	struct met_lote_item items[2] = { { "F-1", t0 }, { "F-2", t1 } };
	assert_int_equal(met_lote_build(zp, items, 2, sha, &e), 0);
	assert_int_equal(strlen(sha), 64);
	int zerr;
	zip_t *z = zip_open(zp, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
	assert_non_null(z);
	assert_int_equal(zip_get_num_entries(z, 0), 2);
	assert_string_equal(zip_get_name(z, 0, 0), "F-1.xml");
	assert_string_equal(zip_get_name(z, 1, 0), "F-2.xml");
	zip_discard(z);
	char *data = NULL;
	size_t len;
	char hex[65];
	assert_int_equal(fm_read_file(zp, 1 << 20, &data, &len), 0);
	fm_sha256_hex(data, len, hex);
	assert_string_equal(hex, sha);
	free(data);
	/* refusals leave nothing behind */
	char bad[400];
	path_in(bad, sizeof(bad), "bad.zip");
	struct met_lote_item dup[2] = { { "F-1", t0 }, { "F-1", t1 } };
	assert_int_equal(met_lote_build(bad, dup, 2, sha, &e), FIRMANTE_E_INVALID);
	struct met_lote_item unsafe[1] = { { "../F", t0 } };
	assert_int_equal(met_lote_build(bad, unsafe, 1, sha, &e), FIRMANTE_E_INVALID);
	struct met_lote_item missing[1] = { { "F-9", "/nonexistent/t.xml" } };
	assert_int_equal(met_lote_build(bad, missing, 1, sha, &e), FIRMANTE_E_IO);
	assert_int_equal(access(bad, F_OK), -1);
}

static void title(struct met_title *t, const char *folio, const char *sha)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->folio, sizeof(t->folio), "%s", folio);
	snprintf(t->curp, sizeof(t->curp), "PEMJ800101HDFRRN07");
	snprintf(t->carrera, sizeof(t->carrera), "103339 INGENIERÍA");
	snprintf(t->status, sizeof(t->status), "%s", MET_ST_VERIFIED);
	snprintf(t->path, sizeof(t->path), "/x/%s.xml", folio);
	snprintf(t->sha256, sizeof(t->sha256), "%s", sha);
}

static void expect_status(met_state *st, const char *folio, const char *status)
{
	struct met_title t;
	struct met_error e = { 0 };
	assert_int_equal(met_state_title_get(st, folio, &t, &e), 0);
	assert_string_equal(t.status, status);
}

static void test_state_transitions(void **state)
{
	(void)state;
	char db[400];
	met_state *st = NULL;
	struct met_error e = { 0 };
	struct met_title t;
	path_in(db, sizeof(db), "state.db");
	assert_int_equal(met_state_open(db, &st, &e), 0);
	title(&t, "A", "aa");
	assert_int_equal(met_state_title_record(st, &t, &e), 0);
	title(&t, "B", "bb");
	assert_int_equal(met_state_title_record(st, &t, &e), 0);
	title(&t, "C", "cc");
	assert_int_equal(met_state_title_record(st, &t, &e), 0);

	/* lot 1: A and B; accepted; A registered, B duplicate of someone else's */
	const char *l1[] = { "A", "B" };
	int64_t id1 = 0, id2 = 0, id3 = 0, id4 = 0;
	assert_int_equal(met_state_lot_begin(st, l1, 2, "/x/l1.zip", "s1", &id1, &e), 0);
	expect_status(st, "A", MET_ST_UPLOAD_UNKNOWN);
	assert_int_equal(met_state_lot_accepted(st, id1, "9001", "ok", &e), 0);
	expect_status(st, "B", MET_ST_UPLOADED);
	struct met_result_row rows[2] = {
		{ "A.xml", 1, "Título electrónico registrado exitosamente", "A" },
		{ "B.xml", 2, "Folio de control previamente registrado: B", "B" },
	};
	assert_int_equal(met_state_lot_results(st, id1, rows, 2, "/x/r1.zip", &e), 0);
	expect_status(st, "A", MET_ST_REGISTERED);
	expect_status(st, "B", MET_ST_REJECTED); /* first upload by us: not ours */
	assert_int_equal(met_state_title_get(st, "A", &t, &e), 0);
	assert_string_equal(t.numero_lote, "9001");

	/* a registered folio with other content is refused */
	title(&t, "A", "other");
	assert_int_equal(met_state_title_record(st, &t, &e), FIRMANTE_E_INVALID);
	assert_non_null(strstr(e.message, "already sent"));

	/* C: refused once (nothing reached the DGP), then an unknown outcome,
	 * then the DGP says previamente registrado: our own upload got through */
	const char *l2[] = { "C" };
	assert_int_equal(met_state_lot_begin(st, l2, 1, "/x/l2.zip", "s2", &id2, &e), 0);
	assert_int_equal(met_state_lot_refused(st, id2, "Usuario o contraseña incorrectos", &e), 0);
	expect_status(st, "C", MET_ST_VERIFIED);
	assert_int_equal(met_state_lot_begin(st, l2, 1, "/x/l3.zip", "s3", &id3, &e), 0);
	assert_int_equal(met_state_lot_unknown(st, id3, "connection dropped", &e), 0);
	expect_status(st, "C", MET_ST_UPLOAD_UNKNOWN);
	assert_int_equal(met_state_lot_begin(st, l2, 1, "/x/l4.zip", "s4", &id4, &e), 0);
	/* interrupted before the lot number was recorded */
	int n = 0;
	assert_int_equal(met_state_recover(st, &n, &e), 0);
	assert_int_equal(n, 1);
	expect_status(st, "C", MET_ST_UPLOAD_UNKNOWN);
	int64_t id5 = 0;
	assert_int_equal(met_state_lot_begin(st, l2, 1, "/x/l5.zip", "s5", &id5, &e), 0);
	assert_int_equal(met_state_lot_accepted(st, id5, "9002", "ok", &e), 0);
	struct met_result_row rc[1] = {
		{ "C.xml", 2, "Folio de control previamente registrado: C", "C" },
	};
	assert_int_equal(met_state_lot_results(st, id5, rc, 1, "/x/r5.zip", &e), 0);
	assert_int_equal(met_state_title_get(st, "C", &t, &e), 0);
	assert_string_equal(t.status, MET_ST_REGISTERED);
	assert_non_null(strstr(t.message, "earlier upload"));

	/* a verified-only folio cannot join a lot twice */
	assert_int_equal(met_state_lot_begin(st, l1, 1, "/x/l6.zip", "s6", &id5, &e),
			 FIRMANTE_E_INVALID);

	/* cancellation */
	assert_int_equal(met_state_title_cancelled(st, "A", "R3", 0, "El folio A fue cancelado "
						   "exitosamente.", 1, 0, &e), 0);
	expect_status(st, "A", MET_ST_CANCELLED);
	assert_int_equal(met_state_title_cancelled(st, "Z", "R3", 0, "x", 1, 0, &e),
			 FIRMANTE_E_NOT_FOUND);
	met_state_close(st);

	/* everything survives a reopen */
	assert_int_equal(met_state_open(db, &st, &e), 0);
	expect_status(st, "A", MET_ST_CANCELLED);
	expect_status(st, "C", MET_ST_REGISTERED);
	met_state_close(st);
	met_state_close(NULL);
}

int main(void)
{
	/* the reader program of this build (result-reader.h) */
	setenv(RESULT_READER_ENV, RESULT_READER, 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_result_xls),
		cmocka_unit_test(test_real_result_zip),
		cmocka_unit_test(test_result_reader_faults),
		cmocka_unit_test(test_result_answer),
		cmocka_unit_test(test_credentials_mode),
		cmocka_unit_test(test_profile_rules),
		cmocka_unit_test(test_lote),
		cmocka_unit_test(test_state_transitions),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

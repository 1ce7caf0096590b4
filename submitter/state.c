/*
 * Lot state, SQLite backend (WAL). See state.h.
 */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "firmante/protocol.h"
#include "state.h"

struct met_state {
	sqlite3 *db;
	char path[4096];
	unsigned wait_s;        /* busy wait for a lock, seconds */
};

static const char SCHEMA[] =
	"CREATE TABLE IF NOT EXISTS titles("
	" folio TEXT PRIMARY KEY, curp TEXT, carrera TEXT, status TEXT NOT NULL,"
	" path TEXT, sha256 TEXT, message TEXT, lot_id INTEGER, uploads INTEGER NOT NULL DEFAULT 0,"
	" updated TEXT);"
	"CREATE TABLE IF NOT EXISTS lots("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, numero_lote TEXT, status TEXT NOT NULL,"
	" zip_path TEXT, zip_sha256 TEXT, result_path TEXT, message TEXT,"
	" polls INTEGER NOT NULL DEFAULT 0, created TEXT, sent TEXT, updated TEXT);"
	"CREATE TABLE IF NOT EXISTS events("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, folio TEXT, lot_id INTEGER,"
	" event TEXT NOT NULL, detail TEXT);"
	"CREATE INDEX IF NOT EXISTS titles_status ON titles(status);"
	"CREATE INDEX IF NOT EXISTS titles_lot ON titles(lot_id);"
	/* onboarding (docs/onboarding.md): profile readiness, QA checks, the
	 * signers' certificates handed to the DGP, authenticated titles */
	"CREATE TABLE IF NOT EXISTS perfiles("
	" perfil TEXT PRIMARY KEY, listo INTEGER NOT NULL, fecha TEXT, usuario TEXT, nota TEXT);"
	"CREATE TABLE IF NOT EXISTS qa_checks("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, fecha TEXT NOT NULL, url TEXT,"
	" cve_institucion TEXT, listo INTEGER NOT NULL, resumen TEXT);"
	"CREATE TABLE IF NOT EXISTS certificados("
	" curp TEXT NOT NULL, no_certificado TEXT NOT NULL, not_after TEXT, firmante TEXT,"
	" fecha TEXT, PRIMARY KEY(curp, no_certificado));"
	"CREATE TABLE IF NOT EXISTS autenticados("
	" folio TEXT PRIMARY KEY, folio_digital TEXT, fecha_autenticacion TEXT,"
	" no_certificado_autoridad TEXT, path TEXT, sha256 TEXT, fecha TEXT);";

__attribute__((format(printf, 3, 4)))
static int fail(struct met_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->code = code;
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Next blank-separated word of *@p (advanced), or NULL. */
static char *next_word(char **p)
{
	char *w = *p;
	while (*w == ' ' || *w == '\t')
		w++;
	if (!*w || *w == '\n')
		return NULL;
	char *e = w;
	while (*e && *e != ' ' && *e != '\t' && *e != '\n')
		e++;
	*p = *e ? e + 1 : e;
	*e = '\0';
	return w;
}

long met_state_lock_holder(const char *path, char *holder, size_t size)
{
	/* /proc/locks (proc(5)): "N: POSIX ADVISORY WRITE PID MAJ:MIN:INODE START END".
	 * SQLite takes POSIX write locks on the database file (rollback journal)
	 * or on its -shm file (the WAL write lock); flock(2) locks show as FLOCK. */
	struct stat sb[3];
	int have[3];
	char other[4200];
	long found = 0;
	if (size)
		holder[0] = '\0';
	have[0] = stat(path, &sb[0]) == 0;
	snprintf(other, sizeof(other), "%s-shm", path);
	have[1] = stat(other, &sb[1]) == 0;
	snprintf(other, sizeof(other), "%s.lock", path);
	have[2] = stat(other, &sb[2]) == 0;
	FILE *f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	char line[256];
	while (!found && fgets(line, sizeof(line), f)) {
		char *p = line, *w[6];
		int k = 0;
		while (k < 6 && (w[k] = next_word(&p)) != NULL)
			k++;
		/* w[0] "N:", w[1] kind, w[2] mode, w[3] access, w[4] pid, w[5] dev:inode;
		 * a waiter has "->" after the number and is skipped */
		if (k < 6 || strcmp(w[1], "->") == 0 || strcmp(w[3], "WRITE") != 0)
			continue;
		char *end;
		errno = 0;
		long pid = strtol(w[4], &end, 10);
		if (errno || *end || pid <= 0 || pid == (long)getpid())
			continue;
		char *colon = strrchr(w[5], ':');
		if (!colon)
			continue;
		errno = 0;
		unsigned long long ino = strtoull(colon + 1, &end, 10);
		if (errno || end == colon + 1 || *end)
			continue;
		for (int i = 0; i < 3; i++)
			if (have[i] && (unsigned long long)sb[i].st_ino == ino)
				found = pid;
	}
	fclose(f);
	if (!found)
		return 0;
	char comm_path[64], comm[64] = "";
	snprintf(comm_path, sizeof(comm_path), "/proc/%ld/comm", found);
	FILE *c = fopen(comm_path, "re");
	if (c) {
		if (!fgets(comm, sizeof(comm), c))
			comm[0] = '\0';
		comm[strcspn(comm, "\n")] = '\0';
		fclose(c);
	}
	if (size)
		snprintf(holder, size, "process %ld%s%s%s", found, comm[0] ? " (" : "", comm,
			 comm[0] ? ")" : "");
	return found;
}

void met_state_advice(FILE *out, const char *path, const struct met_error *err)
{
	if (!err || !path)
		return;
	if (err->code == MET_STATE_E_LOCKED) {
		fprintf(out,
			"titulos: nothing was changed and nothing was sent to the DGP. Wait until "
			"the other program finishes (only one titulos submit, status or cancel "
			"runs at a time; sqlite3 or a backup copy can also hold the lock) and run "
			"the command again, or give it longer with --wait-lock SECONDS.\n");
	} else if (err->code == MET_STATE_E_DAMAGED) {
		fprintf(out,
			"titulos: the file is kept exactly as it is. Restore it from your backup,\n"
			"or copy what SQLite can still read into a new file beside it:\n"
			"  sqlite3 '%s' .recover | sqlite3 '%s.recovered'\n"
			"and use that file with --state '%s.recovered' (or move the damaged file\n"
			"aside and give the new one its name). Titles whose lot is missing from the\n"
			"recovered file are sent again by the next titulos submit; the lot ZIPs in\n"
			"lotes/ and the DGP's result files in resultados/ beside the database show\n"
			"what was sent and what the DGP answered.\n",
			path, path, path);
	}
}

/* The error of a failed SQLite call, worded for a registrar. */
static int dbfail(met_state *st, struct met_error *err, const char *what)
{
	int ec = sqlite3_errcode(st->db);
	if (ec == SQLITE_BUSY || ec == SQLITE_LOCKED) {
		char holder[128];
		met_state_lock_holder(st->path, holder, sizeof(holder));
		return fail(err, MET_STATE_E_LOCKED,
			    "%s: the state database is locked by %s (waited %u s)", st->path,
			    holder[0] ? holder : "another program", st->wait_s);
	}
	if (ec == SQLITE_CORRUPT || ec == SQLITE_NOTADB) {
		/* leave the file exactly as it is: no checkpoint when it closes */
		sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
		return fail(err, MET_STATE_E_DAMAGED,
			    "%s: the state database is damaged (SQLite says: %s); titulos "
			    "changed nothing in it", st->path, sqlite3_errmsg(st->db));
	}
	return fail(err, FIRMANTE_E_IO, "%s: state database: %s: %s", st->path, what,
		    sqlite3_errmsg(st->db));
}

static void now_iso(char buf[32])
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void copy_col(char *dst, size_t size, sqlite3_stmt *s, int col)
{
	const unsigned char *v = sqlite3_column_text(s, col);
	snprintf(dst, size, "%s", v ? (const char *)v : "");
}

static int begin(met_state *st, struct met_error *err)
{
	if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return dbfail(st, err, "begin");
	return 0;
}

static int commit(met_state *st, struct met_error *err)
{
	if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		int rc = dbfail(st, err, "commit");
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	return 0;
}

static void rollback(met_state *st)
{
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Prepare, bind text/int64 arguments per the format ("t" text, "i" int64,
 * "n" int), step once. Returns the sqlite3 step result or -1. */
static int exec_args(met_state *st, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *s = NULL;
	int rc = -1;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	for (int i = 0; fmt[i]; i++) {
		if (fmt[i] == 't') {
			const char *v = va_arg(ap, const char *);
			sqlite3_bind_text(s, i + 1, v, -1, SQLITE_TRANSIENT);
		} else if (fmt[i] == 'i') {
			sqlite3_bind_int64(s, i + 1, va_arg(ap, int64_t));
		} else {
			sqlite3_bind_int(s, i + 1, va_arg(ap, int));
		}
	}
	va_end(ap);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc;
}

static int event(met_state *st, const char *folio, int64_t lot_id, const char *ev,
		 const char *detail)
{
	char now[32];
	now_iso(now);
	int rc = exec_args(st, "INSERT INTO events(time, folio, lot_id, event, detail) "
			       "VALUES (?, ?, NULLIF(?, 0), ?, ?)",
			   "ttitt", now, folio, lot_id, ev, detail ? detail : "");
	return rc == SQLITE_DONE ? 0 : -1;
}

static int mkdir_parent(const char *path)
{
	char buf[4096];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -1;
	char *dir = dirname(buf);
	/* create each missing component, mode 0700 */
	char acc[4096];
	size_t len = strlen(dir);
	if (len >= sizeof(acc))
		return -1;
	for (size_t i = 1; i <= len; i++) {
		if (dir[i] == '/' || dir[i] == '\0') {
			memcpy(acc, dir, i);
			acc[i] = '\0';
			if (mkdir(acc, 0700) != 0 && errno != EEXIST)
				return -1;
		}
	}
	return 0;
}

int met_state_open(const char *path, met_state **out, struct met_error *err)
{
	return met_state_open_wait(path, MET_STATE_WAIT_DEFAULT, out, err);
}

/* PRAGMA quick_check (sqlite.org/pragma.html#pragma_quick_check): the
 * b-trees, their pages and records, without the index contents. Reads only. */
static int quick_check(met_state *st, struct met_error *err)
{
	sqlite3_stmt *s = NULL;
	int rc = 0;
	if (sqlite3_prepare_v2(st->db, "PRAGMA quick_check(1)", -1, &s, NULL) != SQLITE_OK)
		return dbfail(st, err, "check");
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(s, 0);
		if (!v || strcmp((const char *)v, "ok") != 0) {
			sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
			rc = fail(err, MET_STATE_E_DAMAGED,
				  "%s: the state database is damaged (SQLite's quick_check says: "
				  "%.300s); titulos changed nothing in it",
				  st->path, v ? (const char *)v : "no answer");
		}
	} else {
		rc = dbfail(st, err, "check");
	}
	sqlite3_finalize(s);
	return rc;
}

int met_state_open_wait(const char *path, unsigned wait_s, met_state **out,
			struct met_error *err)
{
	int rc;
	met_state *st = NULL;
	struct stat sb;
	if (!path || !*path)
		return fail(err, FIRMANTE_E_CONFIG, "no state database path given");
	if (wait_s > MET_STATE_WAIT_MAX)
		return fail(err, FIRMANTE_E_INVALID, "the wait for a locked state database is "
						     "at most %u s", MET_STATE_WAIT_MAX);
	if (strlen(path) >= sizeof(st->path))
		return fail(err, FIRMANTE_E_CONFIG, "the state database path is longer than %zu "
						    "bytes", sizeof(st->path) - 1);
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
		return fail(err, FIRMANTE_E_CONFIG, "%s: the state database is not a regular file",
			    path);
	if (mkdir_parent(path) != 0)
		return fail(err, FIRMANTE_E_IO, "%s: cannot create the directory of the state "
						"database: %s", path, strerror(errno));
	st = calloc(1, sizeof(*st));
	if (!st)
		return fail(err, FIRMANTE_E_NOMEM, "out of memory");
	snprintf(st->path, sizeof(st->path), "%s", path);
	st->wait_s = wait_s;
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				   SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		rc = fail(err, FIRMANTE_E_IO, "%s: cannot open the state database: %s", path,
			  st->db ? sqlite3_errmsg(st->db) : "out of memory");
		goto out;
	}
	sqlite3_busy_timeout(st->db, (int)(wait_s * 1000));
	/* Damage is found before anything could write to the file. */
	if ((rc = quick_check(st, err)))
		goto out;
	char *msg = NULL;
	if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
				 "PRAGMA foreign_keys=ON;", NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(st->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
		int ec = sqlite3_errcode(st->db);
		if (ec == SQLITE_BUSY || ec == SQLITE_LOCKED || ec == SQLITE_CORRUPT ||
		    ec == SQLITE_NOTADB)
			rc = dbfail(st, err, "open");
		else
			rc = fail(err, FIRMANTE_E_CONFIG, "%s: not a usable titulos state "
							  "database: %s", path,
				  msg ? msg : "unknown error");
		sqlite3_free(msg);
		goto out;
	}
	chmod(path, 0600);
	*out = st;
	st = NULL;
	rc = 0;
out:
	met_state_close(st);
	return rc;
}

void met_state_close(met_state *st)
{
	if (!st)
		return;
	sqlite3_close(st->db);
	free(st);
}

static const char TITLE_COLS[] =
	"t.folio, t.curp, t.carrera, t.status, t.path, t.sha256, t.message, "
	"COALESCE(t.lot_id, 0), COALESCE(l.numero_lote, ''), t.uploads, t.updated";

static void title_from_row(sqlite3_stmt *s, struct met_title *t)
{
	memset(t, 0, sizeof(*t));
	copy_col(t->folio, sizeof(t->folio), s, 0);
	copy_col(t->curp, sizeof(t->curp), s, 1);
	copy_col(t->carrera, sizeof(t->carrera), s, 2);
	copy_col(t->status, sizeof(t->status), s, 3);
	copy_col(t->path, sizeof(t->path), s, 4);
	copy_col(t->sha256, sizeof(t->sha256), s, 5);
	copy_col(t->message, sizeof(t->message), s, 6);
	t->lot_id = sqlite3_column_int64(s, 7);
	copy_col(t->numero_lote, sizeof(t->numero_lote), s, 8);
	t->uploads = sqlite3_column_int(s, 9);
	copy_col(t->updated, sizeof(t->updated), s, 10);
}

int met_state_title_get(met_state *st, const char *folio, struct met_title *out,
			struct met_error *err)
{
	char sql[512];
	sqlite3_stmt *s = NULL;
	int rc;
	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM titles t LEFT JOIN lots l ON l.id = t.lot_id WHERE t.folio = ?",
		 TITLE_COLS);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return dbfail(st, err, "read title");
	sqlite3_bind_text(s, 1, folio, -1, SQLITE_TRANSIENT);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		title_from_row(s, out);
		rc = 0;
	} else if (step == SQLITE_DONE) {
		rc = fail(err, FIRMANTE_E_NOT_FOUND, "folioControl %s is not in the state database",
			  folio);
	} else {
		rc = dbfail(st, err, "read title");
	}
	sqlite3_finalize(s);
	return rc;
}

static int stage_rank(const char *status)
{
	if (strcmp(status, MET_ST_BUILT) == 0)
		return 1;
	if (strcmp(status, MET_ST_SIGNED) == 0)
		return 2;
	if (strcmp(status, MET_ST_VERIFIED) == 0)
		return 3;
	return 9;
}

int met_state_title_record(met_state *st, const struct met_title *t, struct met_error *err)
{
	int rc;
	struct met_title old;
	char now[32];
	if (stage_rank(t->status) > 3)
		return fail(err, FIRMANTE_E_INVALID, "%s: only built, signed or verified can be "
						     "recorded directly", t->folio);
	now_iso(now);
	if ((rc = begin(st, err)))
		return rc;
	struct met_error e2 = { 0 };
	rc = met_state_title_get(st, t->folio, &old, &e2);
	if (rc == FIRMANTE_E_NOT_FOUND) {
		if (exec_args(st, "INSERT INTO titles(folio, curp, carrera, status, path, sha256, "
				  "message, uploads, updated) VALUES (?, ?, ?, ?, ?, ?, '', 0, ?)",
			      "ttttttt", t->folio, t->curp, t->carrera, t->status, t->path,
			      t->sha256, now) != SQLITE_DONE ||
		    event(st, t->folio, 0, t->status, t->path) != 0) {
			rc = dbfail(st, err, "record title");
			goto out;
		}
	} else if (rc == 0) {
		if (strcmp(old.status, MET_ST_REJECTED) == 0 &&
		    strcmp(old.sha256, t->sha256) != 0) {
			/* a corrected document for a folio the DGP did not register */
			if (exec_args(st, "UPDATE titles SET curp = ?, carrera = ?, status = ?, "
					  "path = ?, sha256 = ?, uploads = 0, updated = ? "
					  "WHERE folio = ?",
				      "ttttttt", t->curp, t->carrera, t->status, t->path, t->sha256,
				      now, t->folio) != SQLITE_DONE ||
			    event(st, t->folio, 0, t->status, "corrected after rejection") != 0) {
				rc = dbfail(st, err, "record title");
				goto out;
			}
			return commit(st, err);
		}
		if (stage_rank(old.status) > 3) {
			if (strcmp(old.sha256, t->sha256) != 0) {
				rc = fail(err, FIRMANTE_E_INVALID,
					  "%s: folioControl %s was already sent to the DGP (status "
					  "%s) with other content; a corrected title needs a new "
					  "folioControl (cancel the old one first)",
					  t->path, t->folio, old.status);
				goto out;
			}
			rc = 0; /* already past this stage: nothing to do */
			goto out;
		}
		if (stage_rank(t->status) >= stage_rank(old.status) &&
		    (strcmp(old.status, t->status) != 0 || strcmp(old.sha256, t->sha256) != 0 ||
		     strcmp(old.path, t->path) != 0)) {
			if (exec_args(st, "UPDATE titles SET curp = ?, carrera = ?, status = ?, "
					  "path = ?, sha256 = ?, updated = ? WHERE folio = ?",
				      "ttttttt", t->curp, t->carrera, t->status, t->path, t->sha256,
				      now, t->folio) != SQLITE_DONE ||
			    event(st, t->folio, 0, t->status, t->path) != 0) {
				rc = dbfail(st, err, "record title");
				goto out;
			}
		}
	} else {
		rc = fail(err, e2.code, "%s", e2.message);
		goto out;
	}
	return commit(st, err);
out:
	rollback(st);
	return rc;
}

static int status_filter_sql(char *buf, size_t size, const char *col,
			     const char *const *statuses)
{
	size_t used;
	int n;
	if (size == 0)
		return -1;
	buf[0] = '\0';
	if (!statuses)
		return 0;
	n = snprintf(buf, size, " WHERE %s IN (", col);
	if (n < 0 || (size_t)n >= size)
		return -1;
	used = (size_t)n;
	for (size_t i = 0; statuses[i]; i++) {
		n = snprintf(buf + used, size - used, "%s?", i ? ", " : "");
		if (n < 0 || (size_t)n >= size - used)
			return -1;
		used += (size_t)n;
	}
	n = snprintf(buf + used, size - used, ")");
	return (n < 0 || (size_t)n >= size - used) ? -1 : 0;
}

int met_state_titles_each(met_state *st, const char *const *statuses,
			  int (*fn)(const struct met_title *, void *), void *arg,
			  struct met_error *err)
{
	char where[256], sql[1024];
	sqlite3_stmt *s = NULL;
	int rc = 0;
	if (status_filter_sql(where, sizeof(where), "t.status", statuses))
		return fail(err, FIRMANTE_E_INTERNAL, "too many statuses");
	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM titles t LEFT JOIN lots l ON l.id = t.lot_id%s ORDER BY t.folio",
		 TITLE_COLS, where);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return dbfail(st, err, "list titles");
	for (int i = 0; statuses && statuses[i]; i++)
		sqlite3_bind_text(s, i + 1, statuses[i], -1, SQLITE_STATIC);
	struct met_title *t = malloc(sizeof(*t));
	if (!t) {
		sqlite3_finalize(s);
		return fail(err, FIRMANTE_E_NOMEM, "out of memory");
	}
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		title_from_row(s, t);
		if ((rc = fn(t, arg)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = dbfail(st, err, "list titles");
	free(t);
	sqlite3_finalize(s);
	return rc;
}

int met_state_lots_each(met_state *st, const char *const *statuses,
			int (*fn)(const struct met_lot *, void *), void *arg,
			struct met_error *err)
{
	char where[256], sql[1024];
	sqlite3_stmt *s = NULL;
	int rc = 0;
	if (status_filter_sql(where, sizeof(where), "l.status", statuses))
		return fail(err, FIRMANTE_E_INTERNAL, "too many statuses");
	snprintf(sql, sizeof(sql),
		 "SELECT l.id, COALESCE(l.numero_lote, ''), l.status, l.zip_path, l.zip_sha256, "
		 "l.result_path, l.message, (SELECT COUNT(*) FROM titles t WHERE t.lot_id = l.id), "
		 "l.polls, l.created, l.sent, l.updated FROM lots l%s ORDER BY l.id", where);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return dbfail(st, err, "list lots");
	for (int i = 0; statuses && statuses[i]; i++)
		sqlite3_bind_text(s, i + 1, statuses[i], -1, SQLITE_STATIC);
	struct met_lot *l = malloc(sizeof(*l));
	if (!l) {
		sqlite3_finalize(s);
		return fail(err, FIRMANTE_E_NOMEM, "out of memory");
	}
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		memset(l, 0, sizeof(*l));
		l->id = sqlite3_column_int64(s, 0);
		copy_col(l->numero_lote, sizeof(l->numero_lote), s, 1);
		copy_col(l->status, sizeof(l->status), s, 2);
		copy_col(l->zip_path, sizeof(l->zip_path), s, 3);
		copy_col(l->zip_sha256, sizeof(l->zip_sha256), s, 4);
		copy_col(l->result_path, sizeof(l->result_path), s, 5);
		copy_col(l->message, sizeof(l->message), s, 6);
		l->titles = sqlite3_column_int(s, 7);
		l->polls = sqlite3_column_int(s, 8);
		copy_col(l->created, sizeof(l->created), s, 9);
		copy_col(l->sent, sizeof(l->sent), s, 10);
		copy_col(l->updated, sizeof(l->updated), s, 11);
		if ((rc = fn(l, arg)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = dbfail(st, err, "list lots");
	free(l);
	sqlite3_finalize(s);
	return rc;
}

int met_state_recover(met_state *st, int *count, struct met_error *err)
{
	int rc;
	char now[32];
	now_iso(now);
	if ((rc = begin(st, err)))
		return rc;
	if (exec_args(st, "INSERT INTO events(time, lot_id, event, detail) SELECT ?, id, "
			  "'lot-unknown', 'interrupted while sending' FROM lots WHERE status = ?",
		      "tt", now, MET_LOT_SENDING) != SQLITE_DONE ||
	    exec_args(st, "UPDATE lots SET status = ?, updated = ?, message = "
			  "'interrupted while sending: outcome unknown' WHERE status = ?",
		      "ttt", MET_LOT_UNKNOWN, now, MET_LOT_SENDING) != SQLITE_DONE) {
		rc = dbfail(st, err, "recover");
		rollback(st);
		return rc;
	}
	int changed = sqlite3_changes(st->db);
	if ((rc = commit(st, err)))
		return rc;
	if (count)
		*count = changed;
	return 0;
}

int met_state_lot_begin(met_state *st, const char *const *folios, size_t n,
			const char *zip_path, const char *zip_sha256, int64_t *lot_id,
			struct met_error *err)
{
	int rc;
	char now[32];
	now_iso(now);
	if ((rc = begin(st, err)))
		return rc;
	if (exec_args(st, "INSERT INTO lots(status, zip_path, zip_sha256, created, sent, updated) "
			  "VALUES (?, ?, ?, ?, ?, ?)",
		      "tttttt", MET_LOT_SENDING, zip_path, zip_sha256, now, now, now) !=
	    SQLITE_DONE) {
		rc = dbfail(st, err, "new lot");
		goto out;
	}
	int64_t id = sqlite3_last_insert_rowid(st->db);
	for (size_t i = 0; i < n; i++) {
		if (exec_args(st, "UPDATE titles SET status = ?, lot_id = ?, uploads = uploads + 1, "
				  "updated = ? WHERE folio = ? AND status IN (?, ?)",
			      "titttt", MET_ST_UPLOAD_UNKNOWN, id, now, folios[i], MET_ST_VERIFIED,
			      MET_ST_UPLOAD_UNKNOWN) != SQLITE_DONE) {
			rc = dbfail(st, err, "new lot");
			goto out;
		}
		if (sqlite3_changes(st->db) != 1) {
			rc = fail(err, FIRMANTE_E_INVALID, "%s: not ready for upload (it must be "
							   "verified)", folios[i]);
			goto out;
		}
		if (event(st, folios[i], id, "sending", zip_path) != 0) {
			rc = dbfail(st, err, "new lot");
			goto out;
		}
	}
	if ((rc = commit(st, err)))
		return rc;
	*lot_id = id;
	return 0;
out:
	rollback(st);
	return rc;
}

/* Lot status change plus its titles' status, message, one event per title. */
static int lot_transition(met_state *st, int64_t lot_id, const char *lot_status,
			  const char *numero, const char *title_from, const char *title_to,
			  const char *mensaje, const char *ev, struct met_error *err)
{
	int rc;
	char now[32];
	now_iso(now);
	if ((rc = begin(st, err)))
		return rc;
	if (exec_args(st, "UPDATE lots SET status = ?, numero_lote = COALESCE(?, numero_lote), "
			  "message = ?, updated = ? WHERE id = ?",
		      "tttti", lot_status, numero, mensaje, now, lot_id) != SQLITE_DONE ||
	    exec_args(st, "INSERT INTO events(time, folio, lot_id, event, detail) SELECT ?, folio, "
			  "lot_id, ?, ? FROM titles WHERE lot_id = ? AND status = ?",
		      "tttit", now, ev, mensaje, lot_id, title_from) != SQLITE_DONE ||
	    exec_args(st, "UPDATE titles SET status = ?, message = ?, updated = ?, "
			  "uploads = uploads - ? WHERE lot_id = ? AND status = ?",
		      "tttnit", title_to, mensaje, now,
		      strcmp(lot_status, MET_LOT_REFUSED) == 0 ? 1 : 0, lot_id,
		      title_from) != SQLITE_DONE ||
	    event(st, NULL, lot_id, ev, mensaje) != 0) {
		rc = dbfail(st, err, "lot update");
		rollback(st);
		return rc;
	}
	return commit(st, err);
}

int met_state_lot_accepted(met_state *st, int64_t lot_id, const char *numero,
			   const char *mensaje, struct met_error *err)
{
	return lot_transition(st, lot_id, MET_LOT_ACCEPTED, numero, MET_ST_UPLOAD_UNKNOWN,
			      MET_ST_UPLOADED, mensaje, "uploaded", err);
}

int met_state_lot_refused(met_state *st, int64_t lot_id, const char *mensaje,
			  struct met_error *err)
{
	return lot_transition(st, lot_id, MET_LOT_REFUSED, NULL, MET_ST_UPLOAD_UNKNOWN,
			      MET_ST_VERIFIED, mensaje, "refused", err);
}

int met_state_lot_unknown(met_state *st, int64_t lot_id, const char *mensaje,
			  struct met_error *err)
{
	return lot_transition(st, lot_id, MET_LOT_UNKNOWN, NULL, MET_ST_UPLOAD_UNKNOWN,
			      MET_ST_UPLOAD_UNKNOWN, mensaje, "upload-unknown", err);
}

int met_state_lot_polled(met_state *st, int64_t lot_id, const char *mensaje,
			 struct met_error *err)
{
	char now[32];
	now_iso(now);
	if (exec_args(st, "UPDATE lots SET polls = polls + 1, message = ?, updated = ? "
			  "WHERE id = ?", "tti", mensaje, now, lot_id) != SQLITE_DONE)
		return dbfail(st, err, "lot poll");
	return 0;
}

static int is_previamente_registrado(const char *d)
{
	return strstr(d, "previamente registrado") != NULL;
}

int met_state_lot_results(met_state *st, int64_t lot_id, const struct met_result_row *rows,
			  size_t n, const char *result_path, struct met_error *err)
{
	int rc;
	char now[32];
	now_iso(now);
	if ((rc = begin(st, err)))
		return rc;
	for (size_t i = 0; i < n; i++) {
		const struct met_result_row *r = &rows[i];
		struct met_title t;
		struct met_error e2 = { 0 };
		const char *folio = r->folio;
		memset(&t, 0, sizeof(t));
		char from_name[sizeof(r->archivo)];
		if (!folio[0]) { /* no FOLIO CONTROL: fall back to ARCHIVO "<folio>.xml" */
			snprintf(from_name, sizeof(from_name), "%s", r->archivo);
			size_t l = strlen(from_name);
			if (l > 4 && strcmp(from_name + l - 4, ".xml") == 0)
				from_name[l - 4] = '\0';
			folio = from_name;
		}
		rc = met_state_title_get(st, folio, &t, &e2);
		if (rc == FIRMANTE_E_NOT_FOUND || (rc == 0 && t.lot_id != lot_id)) {
			if (event(st, folio, lot_id, "result-ignored", r->descripcion) != 0) {
				rc = dbfail(st, err, "lot results");
				goto out;
			}
			continue;
		}
		if (rc) {
			rc = fail(err, e2.code, "%s", e2.message);
			goto out;
		}
		const char *to;
		char msg[1200];
		snprintf(msg, sizeof(msg), "%s", r->descripcion);
		if (strcmp(t.status, MET_ST_REGISTERED) == 0 ||
		    strcmp(t.status, MET_ST_CANCELLED) == 0) {
			to = t.status;
			snprintf(msg, sizeof(msg), "%s", t.message);
		} else if (r->estatus == 1) {
			to = MET_ST_REGISTERED;
		} else if (is_previamente_registrado(r->descripcion) && t.uploads > 1) {
			to = MET_ST_REGISTERED;
			snprintf(msg, sizeof(msg), "registered by an earlier upload of this same title "
						   "(DGP: %s)", r->descripcion);
		} else {
			to = MET_ST_REJECTED;
		}
		if (exec_args(st, "UPDATE titles SET status = ?, message = ?, updated = ? "
				  "WHERE folio = ?", "tttt", to, msg, now, folio) != SQLITE_DONE ||
		    event(st, folio, lot_id, to, r->descripcion) != 0) {
			rc = dbfail(st, err, "lot results");
			goto out;
		}
	}
	/* Titles of the lot with no row: the report did not mention them. */
	if (exec_args(st, "UPDATE titles SET status = ?, message = 'the DGP report of the lot "
			  "did not list this title; it will be sent again', updated = ? "
			  "WHERE lot_id = ? AND status IN (?, ?)",
		      "ttitt", MET_ST_UPLOAD_UNKNOWN, now, lot_id, MET_ST_UPLOADED,
		      MET_ST_UPLOAD_UNKNOWN) != SQLITE_DONE ||
	    exec_args(st, "UPDATE lots SET status = ?, result_path = ?, updated = ? WHERE id = ?",
		      "ttti", MET_LOT_PROCESSED, result_path, now, lot_id) != SQLITE_DONE ||
	    event(st, NULL, lot_id, "processed", result_path) != 0) {
		rc = dbfail(st, err, "lot results");
		goto out;
	}
	return commit(st, err);
out:
	rollback(st);
	return rc;
}

int met_state_title_cancelled(met_state *st, const char *folio, const char *motivo,
			      int codigo, const char *mensaje, int cancelled, int review,
			      struct met_error *err)
{
	int rc;
	char now[32], detail[1400];
	struct met_title t;
	now_iso(now);
	if ((rc = begin(st, err)))
		return rc;
	if ((rc = met_state_title_get(st, folio, &t, err)))
		goto out;
	snprintf(detail, sizeof(detail), "motivo %s, codigo %d: %s%s", motivo, codigo, mensaje,
		 review ? " (answer not recognised: needs human review)" : "");
	if (cancelled &&
	    exec_args(st, "UPDATE titles SET status = ?, message = ?, updated = ? WHERE folio = ?",
		      "tttt", MET_ST_CANCELLED, mensaje, now, folio) != SQLITE_DONE) {
		rc = dbfail(st, err, "cancel");
		goto out;
	}
	if (event(st, folio, 0, cancelled ? "cancelled" : "cancel-refused", detail) != 0) {
		rc = dbfail(st, err, "cancel");
		goto out;
	}
	return commit(st, err);
out:
	rollback(st);
	return rc;
}

int met_state_counts_each(met_state *st,
			  int (*fn)(const char *status, const char *carrera, long count, void *),
			  void *arg, struct met_error *err)
{
	sqlite3_stmt *s = NULL;
	int rc = 0, step;
	if (sqlite3_prepare_v2(st->db, "SELECT status, COALESCE(carrera, ''), COUNT(*) FROM titles "
				       "GROUP BY status, carrera ORDER BY status, carrera",
			       -1, &s, NULL) != SQLITE_OK)
		return dbfail(st, err, "report");
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		if ((rc = fn((const char *)sqlite3_column_text(s, 0),
			     (const char *)sqlite3_column_text(s, 1), (long)sqlite3_column_int64(s, 2),
			     arg)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = dbfail(st, err, "report");
	sqlite3_finalize(s);
	return rc;
}

/* ---- onboarding: profile readiness, QA checks, certificates, DGAIR ---- */

int met_state_perfil_set(met_state *st, const char *perfil, int listo, const char *usuario,
			 const char *nota, struct met_error *err)
{
	int rc;
	char now[32], detail[600];
	if (!perfil || !*perfil)
		return fail(err, FIRMANTE_E_INVALID, "no profile named");
	now_iso(now);
	snprintf(detail, sizeof(detail), "%s %s by %s%s%s", perfil, listo ? "ready" : "not ready",
		 usuario ? usuario : "", nota && *nota ? ": " : "", nota ? nota : "");
	if ((rc = begin(st, err)))
		return rc;
	if (exec_args(st, "INSERT OR REPLACE INTO perfiles(perfil, listo, fecha, usuario, nota) "
			  "VALUES (?, ?, ?, ?, ?)",
		      "tnttt", perfil, listo ? 1 : 0, now, usuario ? usuario : "",
		      nota ? nota : "") != SQLITE_DONE ||
	    event(st, NULL, 0, "perfil", detail) != 0) {
		rc = dbfail(st, err, "profile");
		rollback(st);
		return rc;
	}
	return commit(st, err);
}

int met_state_perfil_get(met_state *st, const char *perfil, struct met_perfil *out,
			 struct met_error *err)
{
	sqlite3_stmt *s = NULL;
	int rc;
	if (sqlite3_prepare_v2(st->db, "SELECT perfil, listo, fecha, usuario, nota FROM perfiles "
				       "WHERE perfil = ?", -1, &s, NULL) != SQLITE_OK)
		return dbfail(st, err, "read profile");
	sqlite3_bind_text(s, 1, perfil, -1, SQLITE_TRANSIENT);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		struct met_perfil p;
		memset(&p, 0, sizeof(p));
		copy_col(p.perfil, sizeof(p.perfil), s, 0);
		p.listo = sqlite3_column_int(s, 1);
		copy_col(p.fecha, sizeof(p.fecha), s, 2);
		copy_col(p.usuario, sizeof(p.usuario), s, 3);
		copy_col(p.nota, sizeof(p.nota), s, 4);
		*out = p;
		rc = 0;
	} else if (step == SQLITE_DONE) {
		rc = fail(err, FIRMANTE_E_NOT_FOUND, "profile %s was never marked ready", perfil);
	} else {
		rc = dbfail(st, err, "read profile");
	}
	sqlite3_finalize(s);
	return rc;
}

int met_state_qa_record(met_state *st, const struct met_qa_check *q, struct met_error *err)
{
	int rc;
	char now[32];
	now_iso(now);
	if ((rc = begin(st, err)))
		return rc;
	if (exec_args(st, "INSERT INTO qa_checks(fecha, url, cve_institucion, listo, resumen) "
			  "VALUES (?, ?, ?, ?, ?)",
		      "tttnt", now, q->url, q->cve_institucion, q->listo ? 1 : 0,
		      q->resumen) != SQLITE_DONE ||
	    event(st, NULL, 0, q->listo ? "qa-ready" : "qa-not-ready", q->url) != 0) {
		rc = dbfail(st, err, "QA check");
		rollback(st);
		return rc;
	}
	return commit(st, err);
}

int met_state_qa_last(met_state *st, struct met_qa_check *out, struct met_error *err)
{
	sqlite3_stmt *s = NULL;
	int rc;
	if (sqlite3_prepare_v2(st->db, "SELECT fecha, url, cve_institucion, listo, resumen "
				       "FROM qa_checks ORDER BY id DESC LIMIT 1", -1, &s,
			       NULL) != SQLITE_OK)
		return dbfail(st, err, "read QA check");
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		struct met_qa_check q;
		memset(&q, 0, sizeof(q));
		copy_col(q.fecha, sizeof(q.fecha), s, 0);
		copy_col(q.url, sizeof(q.url), s, 1);
		copy_col(q.cve_institucion, sizeof(q.cve_institucion), s, 2);
		q.listo = sqlite3_column_int(s, 3);
		copy_col(q.resumen, sizeof(q.resumen), s, 4);
		*out = q;
		rc = 0;
	} else if (step == SQLITE_DONE) {
		rc = fail(err, FIRMANTE_E_NOT_FOUND, "no QA check was recorded");
	} else {
		rc = dbfail(st, err, "read QA check");
	}
	sqlite3_finalize(s);
	return rc;
}

int met_state_certificado_record(met_state *st, const struct met_certificado *c,
				 struct met_error *err)
{
	int rc;
	char now[32];
	now_iso(now);
	if ((rc = begin(st, err)))
		return rc;
	if (exec_args(st, "INSERT OR REPLACE INTO certificados(curp, no_certificado, not_after, "
			  "firmante, fecha) VALUES (?, ?, ?, ?, ?)",
		      "ttttt", c->curp, c->no_certificado, c->not_after, c->firmante,
		      now) != SQLITE_DONE ||
	    event(st, NULL, 0, "certificado", c->no_certificado) != 0) {
		rc = dbfail(st, err, "certificate");
		rollback(st);
		return rc;
	}
	return commit(st, err);
}

int met_state_certificados_each(met_state *st,
				int (*fn)(const struct met_certificado *, void *), void *arg,
				struct met_error *err)
{
	sqlite3_stmt *s = NULL;
	int rc = 0, step;
	if (sqlite3_prepare_v2(st->db, "SELECT curp, no_certificado, COALESCE(not_after, ''), "
				       "COALESCE(firmante, ''), COALESCE(fecha, '') FROM certificados "
				       "ORDER BY not_after, curp", -1, &s, NULL) != SQLITE_OK)
		return dbfail(st, err, "certificates");
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		struct met_certificado c;
		memset(&c, 0, sizeof(c));
		copy_col(c.curp, sizeof(c.curp), s, 0);
		copy_col(c.no_certificado, sizeof(c.no_certificado), s, 1);
		copy_col(c.not_after, sizeof(c.not_after), s, 2);
		copy_col(c.firmante, sizeof(c.firmante), s, 3);
		copy_col(c.fecha, sizeof(c.fecha), s, 4);
		if ((rc = fn(&c, arg)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = dbfail(st, err, "certificates");
	sqlite3_finalize(s);
	return rc;
}

int met_state_autenticado_record(met_state *st, const struct met_autenticado *a,
				 struct met_error *err)
{
	int rc;
	char now[32];
	now_iso(now);
	if ((rc = begin(st, err)))
		return rc;
	if (exec_args(st, "INSERT OR REPLACE INTO autenticados(folio, folio_digital, "
			  "fecha_autenticacion, no_certificado_autoridad, path, sha256, fecha) "
			  "VALUES (?, ?, ?, ?, ?, ?, ?)",
		      "ttttttt", a->folio, a->folio_digital, a->fecha_autenticacion,
		      a->no_certificado_autoridad, a->path, a->sha256, now) != SQLITE_DONE ||
	    event(st, a->folio, 0, "authenticated", a->folio_digital) != 0) {
		rc = dbfail(st, err, "authenticated title");
		rollback(st);
		return rc;
	}
	return commit(st, err);
}

int met_state_autenticado_get(met_state *st, const char *folio, struct met_autenticado *out,
			      struct met_error *err)
{
	sqlite3_stmt *s = NULL;
	int rc;
	if (sqlite3_prepare_v2(st->db, "SELECT folio, folio_digital, fecha_autenticacion, "
				       "no_certificado_autoridad, path, sha256, fecha "
				       "FROM autenticados WHERE folio = ?", -1, &s, NULL) != SQLITE_OK)
		return dbfail(st, err, "read authenticated title");
	sqlite3_bind_text(s, 1, folio, -1, SQLITE_TRANSIENT);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		struct met_autenticado a;
		memset(&a, 0, sizeof(a));
		copy_col(a.folio, sizeof(a.folio), s, 0);
		copy_col(a.folio_digital, sizeof(a.folio_digital), s, 1);
		copy_col(a.fecha_autenticacion, sizeof(a.fecha_autenticacion), s, 2);
		copy_col(a.no_certificado_autoridad, sizeof(a.no_certificado_autoridad), s, 3);
		copy_col(a.path, sizeof(a.path), s, 4);
		copy_col(a.sha256, sizeof(a.sha256), s, 5);
		copy_col(a.fecha, sizeof(a.fecha), s, 6);
		*out = a;
		rc = 0;
	} else if (step == SQLITE_DONE) {
		rc = fail(err, FIRMANTE_E_NOT_FOUND, "folioControl %s is not recorded as authenticated",
			  folio);
	} else {
		rc = dbfail(st, err, "read authenticated title");
	}
	sqlite3_finalize(s);
	return rc;
}

int met_state_autenticados_count(met_state *st, long *count, struct met_error *err)
{
	sqlite3_stmt *s = NULL;
	int rc;
	if (sqlite3_prepare_v2(st->db, "SELECT COUNT(*) FROM autenticados", -1, &s, NULL) !=
	    SQLITE_OK)
		return dbfail(st, err, "count authenticated titles");
	if (sqlite3_step(s) == SQLITE_ROW) {
		*count = (long)sqlite3_column_int64(s, 0);
		rc = 0;
	} else {
		rc = dbfail(st, err, "count authenticated titles");
	}
	sqlite3_finalize(s);
	return rc;
}

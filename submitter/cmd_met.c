/*
 * titulos submit | status | results | cancel | report: registration of
 * signed titles with the DGP's MET web service, with the lot state kept in
 * a local database. See docs/met.md.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "met.h"
#include "onboarding.h"
#include "state.h"

/* Exit statuses (titulos(1)): 4 and 5 are the state database's own. */
enum {
	EXIT_OK = 0,
	EXIT_FINDINGS = 1,
	EXIT_USAGE = 2,
	EXIT_FAILURE_IO = 3,
	EXIT_STATE_LOCKED = 4,
	EXIT_STATE_DAMAGED = 5,
};

#define PATH_MAX_LEN 4096

int titulos_cmd_met(const char *cmd, int argc, char **argv);

/* ---- common options ---------------------------------------------------- */

struct common {
	char state[PATH_MAX_LEN];
	char met[PATH_MAX_LEN];
	int lock_fd;
	unsigned wait_lock;     /* seconds to wait for a locked state database */
};

#define COMMON_INIT { .lock_fd = -1, .wait_lock = MET_STATE_WAIT_DEFAULT }

/* Report a failed state database call; returns the exit status for it. */
static int state_failed(const struct common *c, const struct met_error *e)
{
	fprintf(stderr, "titulos: %s\n", e->message);
	met_state_advice(stderr, c->state, e);
	if (e->code == MET_STATE_E_LOCKED)
		return EXIT_STATE_LOCKED;
	if (e->code == MET_STATE_E_DAMAGED)
		return EXIT_STATE_DAMAGED;
	return EXIT_FAILURE_IO;
}

static int default_paths(struct common *c)
{
	const char *d = getenv("XDG_DATA_HOME"), *h = getenv("HOME"), *cf = getenv("XDG_CONFIG_HOME");
	int n;
	if (!c->state[0]) {
		if (d && *d)
			n = snprintf(c->state, sizeof(c->state), "%s/firmante/titulos.db", d);
		else if (h && *h)
			n = snprintf(c->state, sizeof(c->state), "%s/.local/share/firmante/titulos.db", h);
		else
			return -1;
		if (n < 0 || (size_t)n >= sizeof(c->state))
			return -1;
	}
	if (!c->met[0]) {
		if (cf && *cf)
			n = snprintf(c->met, sizeof(c->met), "%s/firmante/met.conf", cf);
		else if (h && *h)
			n = snprintf(c->met, sizeof(c->met), "%s/.config/firmante/met.conf", h);
		else
			return -1;
		if (n < 0 || (size_t)n >= sizeof(c->met))
			return -1;
	}
	return 0;
}

/* Subdirectory beside the state database ("lotes", "resultados"). */
static int state_subdir(const struct common *c, const char *sub, char *out, size_t size)
{
	char buf[PATH_MAX_LEN];
	snprintf(buf, sizeof(buf), "%s", c->state);
	int n = snprintf(out, size, "%s/%s", dirname(buf), sub);
	if (n < 0 || (size_t)n >= size)
		return -1;
	if (mkdir(out, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* Only one run changes the state at a time: the run lock (flock(2) on
 * FILE.lock) is waited for as long as a database lock (--wait-lock). */
static int open_state(struct common *c, met_state **st)
{
	struct met_error e = { 0 };
	int rc = met_state_open_wait(c->state, c->wait_lock, st, &e);
	if (rc)
		return state_failed(c, &e);
	char lock[PATH_MAX_LEN + 8];
	snprintf(lock, sizeof(lock), "%s.lock", c->state);
	c->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int locked = c->lock_fd >= 0 && flock(c->lock_fd, LOCK_EX | LOCK_NB) == 0;
	for (unsigned i = 0; !locked && c->lock_fd >= 0 && errno == EWOULDBLOCK &&
			     i < c->wait_lock * 10u; i++) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		locked = flock(c->lock_fd, LOCK_EX | LOCK_NB) == 0;
	}
	if (!locked) {
		if (c->lock_fd < 0) {
			fprintf(stderr, "titulos: %s: cannot open: %s\n", lock, strerror(errno));
			met_state_close(*st);
			*st = NULL;
			return EXIT_FAILURE_IO;
		}
		char holder[128];
		met_state_lock_holder(c->state, holder, sizeof(holder));
		e.code = MET_STATE_E_LOCKED;
		snprintf(e.message, sizeof(e.message),
			 "%.400s: the state database is in use by another titulos submit, status "
			 "or cancel%s%s (waited %u s)", c->state, holder[0] ? ", " : "", holder,
			 c->wait_lock);
		met_state_close(*st);
		*st = NULL;
		return state_failed(c, &e);
	}
	return EXIT_OK;
}

static void close_state(struct common *c, met_state *st)
{
	met_state_close(st);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	c->lock_fd = -1;
}

static int load_profile(const struct common *c, struct met_profile *p)
{
	struct met_error e = { 0 };
	if (met_profile_load(c->met, p, &e) != 0) {
		fprintf(stderr, "titulos: %s\n", e.message);
		return e.code == FIRMANTE_E_NOMEM ? EXIT_FAILURE_IO : EXIT_FINDINGS;
	}
	return EXIT_OK;
}

static void test_crash_point(const char *where)
{
	/* Test hook (docs/met.md): stop dead at a named point, like a power cut. */
	const char *at = getenv("TITULOS_TEST_CRASH_AT");
	if (at && strcmp(at, where) == 0)
		raise(SIGKILL);
}

#define COMMON_OPTS                                         \
	{ "state", required_argument, NULL, 'S' },          \
	{ "met", required_argument, NULL, 'M' },            \
	{ "wait-lock", required_argument, NULL, 'W' },      \
	{ "help", no_argument, NULL, 'h' }

static int common_opt(struct common *c, int opt)
{
	if (opt == 'S') {
		snprintf(c->state, sizeof(c->state), "%s", optarg);
		return 1;
	}
	if (opt == 'M') {
		snprintf(c->met, sizeof(c->met), "%s", optarg);
		return 1;
	}
	if (opt == 'W') {
		char *end;
		errno = 0;
		unsigned long v = strtoul(optarg, &end, 10);
		if (errno || end == optarg || *end || optarg[0] == '-' || v > MET_STATE_WAIT_MAX) {
			fprintf(stderr, "titulos: --wait-lock must be a number of seconds from 0 to "
					"%u\n", MET_STATE_WAIT_MAX);
			return -1;
		}
		c->wait_lock = (unsigned)v;
		return 1;
	}
	return 0;
}

static const char COMMON_HELP[] =
	"  --state FILE        lot state database (default\n"
	"                      $XDG_DATA_HOME/firmante/titulos.db)\n"
	"  --met FILE          MET configuration: profile, url, ca-bundle, credentials\n"
	"                      (default $XDG_CONFIG_HOME/firmante/met.conf; docs/met.md)\n"
	"  --wait-lock SECONDS how long to wait for a state database locked by another\n"
	"                      program (0-3600, default 10)\n"
	"  -h, --help          this help\n\n"
	"Exit status: 0 done; 1 findings or refusals; 2 usage; 3 I/O, network or\n"
	"service failure; 4 the state database is locked by another program (nothing\n"
	"was changed or sent); 5 the state database is damaged (kept as it is; the\n"
	"message says how to restore or recover it).\n";

/* ---- submit ------------------------------------------------------------ */

static void usage_submit(FILE *o)
{
	fprintf(o,
		"Usage: titulos submit [--in DIR] [--lot-size N] [--state FILE] [--met FILE]\n"
		"Upload every verified title not yet uploaded to the DGP (cargaTituloElectronico),\n"
		"in ZIP lots of --lot-size titles (default: lot-size of the MET configuration).\n"
		"With --in, the signed titles DIR/*.xml are checked (as titulos verify) and\n"
		"recorded first. Titles whose earlier upload has an unknown outcome are sent\n"
		"again: the DGP's answer settles them. Then run 'titulos status --wait'.\n"
		"The produccion profile is refused until 'titulos perfil listo produccion'\n"
		"recorded that the QA phase passed (docs/onboarding.md).\n\n"
		"  -i, --in DIR        signed titles to check and record before uploading\n"
		"  -n, --lot-size N    titles per lot (1-%u)\n%s",
		MET_MAX_LOT_TITLES, COMMON_HELP);
}

static int xml_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	return n > 4 && d->d_name[0] != '.' && strcmp(d->d_name + n - 4, ".xml") == 0;
}

/* Verify and record every .xml file of @dir; returns an exit status. */
static int record_dir(const struct common *c, met_state *st, const char *dir,
		      const char *cve_institucion)
{
	struct dirent **names = NULL;
	titulo_verifier *v = NULL;
	struct titulo_error terr = { 0 };
	int status = EXIT_OK, n = scandir(dir, &names, xml_filter, alphasort);
	size_t ok = 0, bad = 0;
	if (n < 0) {
		fprintf(stderr, "titulos: %s: cannot read the directory: %s\n", dir, strerror(errno));
		return EXIT_FAILURE_IO;
	}
	if (titulo_verifier_new(NULL, &v, &terr) != 0) {
		fprintf(stderr, "titulos: %s\n", terr.message);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX_LEN], *xml = NULL;
		size_t len = 0;
		struct titulo_findings f = { 0 };
		titulo *t = NULL;
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) >= (int)sizeof(path))
			continue;
		int rc = fm_read_file(path, FIRMANTE_MAX_DOCUMENT, &xml, &len);
		if (rc == 0)
			rc = titulo_verify(v, xml, len, 0, &f);
		if (rc == 0)
			rc = titulo_parse(xml, len, &t, &terr);
		const char *cve_t = rc == 0 ? titulo_attr(t, "Institucion", "cveInstitucion") : NULL;
		if (rc == 0 && cve_institucion && cve_institucion[0] &&
		    (!cve_t || strcmp(cve_t, cve_institucion) != 0)) {
			/* §11.5: URL, account and institution belong together */
			fprintf(stderr, "titulos: %s: not recorded: the title is of institution %s, "
					"the MET profile's account is for institution %s\n",
				path, cve_t ? cve_t : "(none)", cve_institucion);
			bad++;
		} else if (rc) {
			char line[1400];
			fprintf(stderr, "titulos: %s: not recorded: %s\n", path,
				f.count ? titulo_finding_format(&f.items[0], line, sizeof(line))
					: (rc == FIRMANTE_E_IO ? strerror(errno) : firmante_err_title(rc)));
			bad++;
		} else {
			struct met_title mt;
			struct met_error e = { 0 };
			memset(&mt, 0, sizeof(mt));
			const char *folio = titulo_attr(t, "TituloElectronico", "folioControl");
			const char *curp = titulo_attr(t, "Profesionista", "curp");
			const char *cve = titulo_attr(t, "Carrera", "cveCarrera");
			const char *nom = titulo_attr(t, "Carrera", "nombreCarrera");
			snprintf(mt.folio, sizeof(mt.folio), "%s", folio ? folio : "");
			snprintf(mt.curp, sizeof(mt.curp), "%s", curp ? curp : "");
			snprintf(mt.carrera, sizeof(mt.carrera), "%s %s", cve ? cve : "", nom ? nom : "");
			snprintf(mt.status, sizeof(mt.status), "%s", MET_ST_VERIFIED);
			char *abs = realpath(path, NULL);
			snprintf(mt.path, sizeof(mt.path), "%s", abs ? abs : path);
			free(abs);
			fm_sha256_hex(xml, len, mt.sha256);
			if (met_state_title_record(st, &mt, &e) != 0) {
				if (e.code == MET_STATE_E_LOCKED || e.code == MET_STATE_E_DAMAGED) {
					/* the database itself: no point trying the next file */
					status = state_failed(c, &e);
					titulo_free(t);
					titulo_findings_clear(&f);
					free(xml);
					goto out;
				}
				fprintf(stderr, "titulos: %s\n", e.message);
				bad++;
				if (e.code == FIRMANTE_E_IO)
					status = EXIT_FAILURE_IO;
			} else {
				ok++;
			}
		}
		titulo_free(t);
		titulo_findings_clear(&f);
		free(xml);
	}
	printf("%zu title(s) checked and recorded from %s%s", ok, dir, bad ? "" : "\n");
	if (bad) {
		printf("; %zu not recorded (see above)\n", bad);
		if (status == EXIT_OK)
			status = EXIT_FINDINGS;
	}
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	titulo_verifier_free(v);
	return status;
}

struct pending {
	char (*folio)[128];
	char (*path)[PATH_MAX_LEN];
	char (*sha)[65];
	size_t n, cap;
};

static int collect_pending(const struct met_title *t, void *arg)
{
	struct pending *p = arg;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 256;
		void *a = realloc(p->folio, cap * sizeof(*p->folio));
		if (!a)
			return FIRMANTE_E_NOMEM;
		p->folio = a;
		void *b = realloc(p->path, cap * sizeof(*p->path));
		if (!b)
			return FIRMANTE_E_NOMEM;
		p->path = b;
		void *d = realloc(p->sha, cap * sizeof(*p->sha));
		if (!d)
			return FIRMANTE_E_NOMEM;
		p->sha = d;
		p->cap = cap;
	}
	snprintf(p->sha[p->n], sizeof(p->sha[0]), "%s", t->sha256);
	snprintf(p->folio[p->n], sizeof(p->folio[0]), "%s", t->folio);
	snprintf(p->path[p->n], sizeof(p->path[0]), "%s", t->path);
	p->n++;
	return 0;
}

static void progress(size_t done, size_t total)
{
	if (!isatty(STDERR_FILENO) || total == 0)
		return;
	int width = 40, fill = (int)(done * (size_t)width / total);
	fprintf(stderr, "\r[%.*s%*s] %zu/%zu", fill, "########################################",
		width - fill, "", done, total);
	if (done == total)
		fputc('\n', stderr);
	fflush(stderr);
}

static int cmd_submit(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "in", required_argument, NULL, 'i' },
		{ "lot-size", required_argument, NULL, 'n' },
		COMMON_OPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct common c = COMMON_INIT;
	const char *in_dir = NULL;
	long lot_size = 0;
	int o;
	while ((o = getopt_long(argc, argv, "i:n:h", opts, NULL)) != -1) {
		int co = common_opt(&c, o);
		if (co < 0)
			return EXIT_USAGE;
		if (co)
			continue;
		switch (o) {
		case 'i': in_dir = optarg; break;
		case 'n': {
			char *end;
			lot_size = strtol(optarg, &end, 10);
			if (*end || lot_size < 1 || lot_size > (long)MET_MAX_LOT_TITLES) {
				fprintf(stderr, "titulos: --lot-size must be 1 to %u\n",
					MET_MAX_LOT_TITLES);
				return EXIT_USAGE;
			}
			break;
		}
		case 'h': usage_submit(stdout); return EXIT_OK;
		default: usage_submit(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc || default_paths(&c)) {
		usage_submit(stderr);
		return EXIT_USAGE;
	}
	met_state *st = NULL;
	struct met_profile prof;
	struct pending pend = { 0 };
	struct met_error e = { 0 };
	int status;
	memset(&prof, 0, sizeof(prof));
	if ((status = load_profile(&c, &prof)))
		return status;
	if ((status = open_state(&c, &st)))
		goto out;
	/* production only once the profile is marked ready (docs/onboarding.md) */
	if ((status = onboarding_production_check(st, prof.name)))
		goto out;
	int recovered = 0;
	if (met_state_recover(st, &recovered, &e)) {
		status = state_failed(&c, &e);
		goto out;
	}
	if (recovered)
		printf("%d lot(s) were interrupted while sending: their titles are "
		       "upload-unknown and are sent again now\n", recovered);
	int record_status = in_dir ? record_dir(&c, st, in_dir, prof.cve_institucion) : EXIT_OK;
	if (record_status >= EXIT_FAILURE_IO) {
		status = record_status;
		goto out;
	}
	static const char *const ready[] = { MET_ST_UPLOAD_UNKNOWN, MET_ST_VERIFIED, NULL };
	int rc = met_state_titles_each(st, ready, collect_pending, &pend, &e);
	if (rc == FIRMANTE_E_NOMEM) {
		fprintf(stderr, "titulos: out of memory\n");
		status = EXIT_FAILURE_IO;
		goto out;
	}
	if (rc) {
		status = state_failed(&c, &e);
		goto out;
	}
	if (pend.n == 0) {
		printf("nothing to upload: no verified title is waiting\n");
		status = record_status;
		goto out;
	}
	size_t per = lot_size > 0 ? (size_t)lot_size : prof.lot_size;
	size_t lots = (pend.n + per - 1) / per, done = 0, accepted = 0;
	char lotdir[PATH_MAX_LEN];
	if (state_subdir(&c, "lotes", lotdir, sizeof(lotdir))) {
		fprintf(stderr, "titulos: cannot create the lot directory beside %s\n", c.state);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	printf("%zu title(s) to upload in %zu lot(s) to %s (%s)\n", pend.n, lots, prof.url,
	       prof.name);
	status = EXIT_OK;
	size_t total = pend.n;
	for (size_t l = 0; l < lots; l++) {
		size_t first = l * per, cnt = total - first < per ? total - first : per;
		struct met_lote_item *items = calloc(cnt, sizeof(*items));
		const char **folios = calloc(cnt, sizeof(*folios));
		if (!items || !folios) {
			free(items);
			free(folios);
			fprintf(stderr, "titulos: out of memory\n");
			status = EXIT_FAILURE_IO;
			goto out;
		}
		size_t k = 0;
		for (size_t i = 0; i < cnt; i++) {
			/* The lot carries exactly what was verified: same bytes. */
			char *xml = NULL, sha_now[65] = "";
			size_t xlen = 0;
			if (fm_read_file(pend.path[first + i], FIRMANTE_MAX_DOCUMENT, &xml, &xlen) == 0)
				fm_sha256_hex(xml, xlen, sha_now);
			free(xml);
			if (strcmp(sha_now, pend.sha[first + i]) != 0) {
				fprintf(stderr, "titulos: %s: %s is missing or changed since it was "
						"verified; not uploaded (run titulos submit --in DIR "
						"again)\n", pend.folio[first + i], pend.path[first + i]);
				if (status == EXIT_OK)
					status = EXIT_FINDINGS;
				continue;
			}
			items[k].folio = folios[k] = pend.folio[first + i];
			items[k].path = pend.path[first + i];
			k++;
		}
		if (k == 0) {
			free(items);
			free(folios);
			continue;
		}
		cnt = k;
		char zip[PATH_MAX_LEN + 80], nombre[64], sha[65], numero[32] = "", mensaje[MET_MAX_FIELD];
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		snprintf(nombre, sizeof(nombre), "lote-%lld-%09ld.zip", (long long)ts.tv_sec,
			 ts.tv_nsec);
		snprintf(zip, sizeof(zip), "%s/%s", lotdir, nombre);
		int64_t lot_id = 0;
		rc = met_lote_build(zip, items, cnt, sha, &e);
		if (rc == 0) {
			test_crash_point("after-zip");
			/* upload-unknown is recorded before the request may leave: a
			 * lot that cannot be recorded is not sent */
			rc = met_state_lot_begin(st, folios, cnt, zip, sha, &lot_id, &e);
			if (rc)
				unlink(zip);
		}
		free(items);
		free(folios);
		if (rc == MET_STATE_E_LOCKED || rc == MET_STATE_E_DAMAGED) {
			status = state_failed(&c, &e);
			goto out;
		}
		if (rc) {
			fprintf(stderr, "titulos: lot %zu: %s\n", l + 1, e.message);
			status = EXIT_FAILURE_IO;
			goto out;
		}
		test_crash_point("before-carga");
		rc = met_carga(&prof, nombre, zip, numero, mensaje, sizeof(mensaje), &e);
		test_crash_point("after-carga");
		struct met_error e2 = { 0 };
		int rc2;
		if (rc == 0) {
			rc2 = met_state_lot_accepted(st, lot_id, numero, mensaje, &e2);
			printf("lot %zu of %zu: %zu title(s) -> numeroLote %s: %s\n", l + 1, lots, cnt,
			       numero, mensaje);
			accepted++;
		} else if (rc == FIRMANTE_E_FORBIDDEN || rc == FIRMANTE_E_INVALID ||
			   !e.maybe_sent) {
			rc2 = met_state_lot_refused(st, lot_id, e.message, &e2);
			fprintf(stderr, "titulos: lot %zu of %zu: not uploaded: %s\n", l + 1, lots,
				e.message);
			status = rc == FIRMANTE_E_FORBIDDEN || rc == FIRMANTE_E_INVALID ? EXIT_FINDINGS
										   : EXIT_FAILURE_IO;
		} else {
			char m[sizeof(e.message) + 64];
			snprintf(m, sizeof(m), "outcome of the upload unknown: %s", e.message);
			rc2 = met_state_lot_unknown(st, lot_id, m, &e2);
			fprintf(stderr, "titulos: lot %zu of %zu: %s; its %zu title(s) are "
					"upload-unknown and will be sent again by the next titulos "
					"submit\n", l + 1, lots, e.message, cnt);
			status = EXIT_FAILURE_IO;
		}
		if (rc2) {
			/* the lot stays "sending": the next run makes it upload-unknown */
			status = state_failed(&c, &e2);
			goto out;
		}
		done = first + (total - first < per ? total - first : per);
		progress(done, total);
		if (rc)
			break; /* stop at the first failed lot: the service or the account is in trouble */
	}
	printf("%zu lot(s) accepted; run 'titulos status --wait' for the DGP's results\n", accepted);
	if (status == EXIT_OK)
		status = record_status;
out:
	free(pend.folio);
	free(pend.path);
	free(pend.sha);
	met_profile_clear(&prof);
	close_state(&c, st);
	return status;
}

/* ---- status ------------------------------------------------------------ */

static void usage_status(FILE *o)
{
	fprintf(o,
		"Usage: titulos status [--wait] [--state FILE] [--met FILE]\n"
		"Ask the DGP about every uploaded lot (consultaProcesoTituloElectronico); for\n"
		"processed lots, download the result (descargaTituloElectronico), keep the\n"
		"result ZIP beside the state database and record each title's outcome.\n\n"
		"  -w, --wait          keep polling, with growing pauses (poll-delay doubling up\n"
		"                      to poll-max-delay), until every lot has its result or\n"
		"                      poll-deadline passes\n%s",
		COMMON_HELP);
}

struct lot_ids {
	int64_t id[1024];
	char numero[1024][32];
	size_t n;
	size_t skipped; /* beyond the cap: polled in a later pass */
};

static int collect_lot(const struct met_lot *l, void *arg)
{
	struct lot_ids *ids = arg;
	if (ids->n < sizeof(ids->id) / sizeof(ids->id[0])) {
		ids->id[ids->n] = l->id;
		snprintf(ids->numero[ids->n], sizeof(ids->numero[0]), "%s", l->numero_lote);
		ids->n++;
	} else {
		ids->skipped++;
	}
	return 0;
}

/* One pass over the accepted lots. *pending receives how many still wait. */
static int poll_lots(const struct common *c, met_state *st, const struct met_profile *p,
		     size_t *pending)
{
	static const char *const acc[] = { MET_LOT_ACCEPTED, NULL };
	struct lot_ids *ids = calloc(1, sizeof(*ids));
	struct met_error e = { 0 };
	int status = EXIT_OK;
	*pending = 0;
	if (!ids) {
		fprintf(stderr, "titulos: out of memory\n");
		return EXIT_FAILURE_IO;
	}
	if (met_state_lots_each(st, acc, collect_lot, ids, &e)) {
		free(ids);
		return state_failed(c, &e);
	}
	*pending = ids->skipped;
	for (size_t i = 0; i < ids->n; i++) {
		const char *num = ids->numero[i];
		int est = -1;
		char msg[MET_MAX_FIELD];
		if (met_consulta(p, num, &est, msg, sizeof(msg), &e) != 0) {
			fprintf(stderr, "titulos: %s\n", e.message);
			status = e.code == FIRMANTE_E_FORBIDDEN ? EXIT_FINDINGS : EXIT_FAILURE_IO;
			(*pending)++;
			continue;
		}
		if (met_state_lot_polled(st, ids->id[i], msg, &e) != 0) {
			status = state_failed(c, &e);
			*pending += ids->n - i;
			break;
		}
		if (est != 1) {
			printf("lot %s: not processed yet (estatusLote %d): %s\n", num, est, msg);
			(*pending)++;
			continue;
		}
		uint8_t *zip = NULL;
		size_t zlen = 0;
		if (met_descarga(p, num, &zip, &zlen, msg, sizeof(msg), &e) != 0) {
			fprintf(stderr, "titulos: %s\n", e.message);
			status = EXIT_FAILURE_IO;
			(*pending)++;
			continue;
		}
		if (!zip) {
			printf("lot %s: no result yet: %s\n", num, msg);
			(*pending)++;
			continue;
		}
		struct met_result_row *rows = NULL;
		size_t nrows = 0;
		char dir[PATH_MAX_LEN], path[PATH_MAX_LEN + 64];
		if (state_subdir(c, "resultados", dir, sizeof(dir)) != 0) {
			fprintf(stderr, "titulos: cannot create the result directory beside %s\n",
				c->state);
			free(zip);
			status = EXIT_FAILURE_IO;
			break;
		}
		snprintf(path, sizeof(path), "%s/ResultadoCargaTitulos%s.zip", dir, num);
		if (fm_write_file_atomic(path, zip, zlen, 0600) != 0) {
			fprintf(stderr, "titulos: %s: cannot write: %s\n", path, strerror(errno));
			free(zip);
			status = EXIT_FAILURE_IO;
			continue;
		}
		int rc = met_result_read_zip(zip, zlen, num, &rows, &nrows, &e);
		free(zip);
		if (rc) {
			fprintf(stderr, "titulos: the result file of lot %s could not be read: %s; "
					"it is kept at %s\n", num, e.message, path);
			status = EXIT_FAILURE_IO;
			(*pending)++;
			continue;
		}
		if (met_state_lot_results(st, ids->id[i], rows, nrows, path, &e) != 0) {
			status = state_failed(c, &e);
			if (status != EXIT_FAILURE_IO) {
				free(rows);
				*pending += ids->n - i;
				break;
			}
		} else {
			size_t ok = 0;
			for (size_t k = 0; k < nrows; k++)
				ok += rows[k].estatus == 1;
			printf("lot %s: processed: %zu row(s), %zu registered now, %zu not (see "
			       "titulos results)\n", num, nrows, ok, nrows - ok);
		}
		free(rows);
	}
	free(ids);
	return status;
}

struct count_ctx {
	long by_status[8];
};

static const char *const STATUSES[] = { MET_ST_BUILT, MET_ST_SIGNED, MET_ST_VERIFIED,
					MET_ST_UPLOAD_UNKNOWN, MET_ST_UPLOADED, MET_ST_REGISTERED,
					MET_ST_REJECTED, MET_ST_CANCELLED };

static int count_status(const char *status, const char *carrera, long n, void *arg)
{
	struct count_ctx *c = arg;
	(void)carrera;
	for (int i = 0; i < 8; i++)
		if (strcmp(status, STATUSES[i]) == 0)
			c->by_status[i] += n;
	return 0;
}

static int print_counts(const struct common *c, met_state *st)
{
	struct count_ctx cc = { { 0 } };
	struct met_error e = { 0 };
	if (met_state_counts_each(st, count_status, &cc, &e) != 0)
		return state_failed(c, &e);
	printf("titles:");
	for (int i = 0; i < 8; i++)
		if (cc.by_status[i])
			printf(" %s %ld", STATUSES[i], cc.by_status[i]);
	printf("\n");
	if (cc.by_status[3])
		printf("note: %ld title(s) upload-unknown: 'titulos submit' sends them again and "
		       "the DGP's answer settles them\n", cc.by_status[3]);
	return EXIT_OK;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "wait", no_argument, NULL, 'w' },
		COMMON_OPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct common c = COMMON_INIT;
	int wait = 0, o;
	while ((o = getopt_long(argc, argv, "wh", opts, NULL)) != -1) {
		int co = common_opt(&c, o);
		if (co < 0)
			return EXIT_USAGE;
		if (co)
			continue;
		switch (o) {
		case 'w': wait = 1; break;
		case 'h': usage_status(stdout); return EXIT_OK;
		default: usage_status(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc || default_paths(&c)) {
		usage_status(stderr);
		return EXIT_USAGE;
	}
	met_state *st = NULL;
	struct met_profile prof;
	int status;
	memset(&prof, 0, sizeof(prof));
	if ((status = load_profile(&c, &prof)))
		return status;
	if ((status = open_state(&c, &st)))
		goto out;
	struct met_error e = { 0 };
	int recovered = 0;
	if (met_state_recover(st, &recovered, &e) != 0) {
		status = state_failed(&c, &e);
		goto out;
	}
	time_t start = time(NULL);
	long delay = prof.poll_delay_s;
	for (;;) {
		size_t pending = 0;
		status = poll_lots(&c, st, &prof, &pending);
		if (!wait || pending == 0 || status == EXIT_FINDINGS || status > EXIT_FAILURE_IO)
			break;
		if (time(NULL) - start + delay > prof.poll_deadline_s) {
			fprintf(stderr, "titulos: %zu lot(s) still without a result after %ld s "
					"(poll-deadline); run titulos status again later\n",
				pending, (long)(time(NULL) - start));
			status = EXIT_FAILURE_IO;
			break;
		}
		printf("%zu lot(s) waiting; next check in %ld s\n", pending, delay);
		fflush(stdout);
		sleep((unsigned)delay);
		delay = delay * 2 > prof.poll_max_delay_s ? prof.poll_max_delay_s : delay * 2;
		if (delay < 1)
			delay = 1;
	}
	if (status <= EXIT_FAILURE_IO) {
		int counted = print_counts(&c, st);
		if (counted)
			status = counted;
	}
out:
	met_profile_clear(&prof);
	close_state(&c, st);
	return status;
}

/* ---- results ------------------------------------------------------------ */

static void usage_results(FILE *o)
{
	fprintf(o,
		"Usage: titulos results [--csv | --json] [--state FILE]\n"
		"One line per title: folioControl, status, numeroLote, the DGP's message.\n"
		"Reads the state database only (no network).\n\n"
		"  --csv               CSV with a header row\n"
		"  --json              a JSON array of objects\n%s",
		COMMON_HELP);
}

static void csv_field(const char *s, int last)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
	putchar(last ? '\n' : ',');
}

struct results_ctx {
	int mode;     /* 0 table, 1 CSV, 2 JSON */
	json_t *arr;  /* JSON mode */
};

static int print_title(const struct met_title *t, void *arg)
{
	struct results_ctx *rc = arg;
	int mode = rc->mode;
	if (mode == 1) {
		csv_field(t->folio, 0);
		csv_field(t->status, 0);
		csv_field(t->numero_lote, 0);
		csv_field(t->curp, 0);
		csv_field(t->carrera, 0);
		csv_field(t->message, 0);
		csv_field(t->updated, 1);
	} else if (mode == 2) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "folioControl",
				      t->folio, "status", t->status, "numeroLote", t->numero_lote,
				      "curp", t->curp, "carrera", t->carrera, "message", t->message,
				      "path", t->path, "sha256", t->sha256, "uploads", t->uploads);
		if (!o || json_array_append_new(rc->arr, o) != 0)
			return FIRMANTE_E_NOMEM;
	} else {
		printf("%-24s %-15s %-10s %s\n", t->folio, t->status,
		       t->numero_lote[0] ? t->numero_lote : "-", t->message);
	}
	return 0;
}

static int cmd_results(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "csv", no_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		COMMON_OPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct common c = COMMON_INIT;
	int mode = 0, o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int co = common_opt(&c, o);
		if (co < 0)
			return EXIT_USAGE;
		if (co)
			continue;
		switch (o) {
		case 'c': mode = 1; break;
		case 'j': mode = 2; break;
		case 'h': usage_results(stdout); return EXIT_OK;
		default: usage_results(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc || default_paths(&c)) {
		usage_results(stderr);
		return EXIT_USAGE;
	}
	met_state *st = NULL;
	struct met_error e = { 0 };
	if (met_state_open_wait(c.state, c.wait_lock, &st, &e))
		return state_failed(&c, &e);
	if (mode == 1)
		printf("folioControl,status,numeroLote,curp,carrera,message,updated\n");
	else if (mode == 0)
		printf("%-24s %-15s %-10s %s\n", "folioControl", "status", "numeroLote", "message");
	struct results_ctx ctx = { mode, mode == 2 ? json_array() : NULL };
	int rc = (mode == 2 && !ctx.arr) ? FIRMANTE_E_NOMEM
					 : met_state_titles_each(st, NULL, print_title, &ctx, &e);
	if (rc == 0 && mode == 2) {
		char *s = json_dumps(ctx.arr, JSON_INDENT(1));
		if (s)
			printf("%s\n", s);
		else
			rc = FIRMANTE_E_NOMEM;
		free(s);
	}
	json_decref(ctx.arr);
	met_state_close(st);
	if (rc == FIRMANTE_E_NOMEM) {
		fprintf(stderr, "titulos: out of memory\n");
		return EXIT_FAILURE_IO;
	}
	return rc ? state_failed(&c, &e) : EXIT_OK;
}

/* ---- cancel ------------------------------------------------------------ */

static void usage_cancel(FILE *o)
{
	fprintf(o,
		"Usage: titulos cancel --folio F --motivo CODE [--state FILE] [--met FILE]\n"
		"Cancel a registered title at the DGP (cancelaTituloElectronico) and record the\n"
		"answer. Motives (catalog motivoCancelacion):\n"
		"  R1 REASIGNACIÓN PARA LA CONCORDANCIA SEXO-GENÉRICA\n"
		"  R2 RECONOCIMIENTO DE PATERNIDAD\n"
		"  R3 CAMBIO Y MODIFICACIÓN AL NOMBRE\n"
		"  R4 CASO FORTUITO O FUERZA MAYOR\n"
		"  R5 OTRO\n"
		"  C1 CAUSA IMPUTABLE AL PROFESIONISTA\n\n"
		"  -f, --folio F       folioControl exactly as registered\n"
		"  -m, --motivo CODE   R1, R2, R3, R4, R5 or C1\n%s",
		COMMON_HELP);
}

static int cmd_cancel(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "folio", required_argument, NULL, 'f' },
		{ "motivo", required_argument, NULL, 'm' },
		COMMON_OPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct common c = COMMON_INIT;
	const char *folio = NULL, *motivo = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "f:m:h", opts, NULL)) != -1) {
		int co = common_opt(&c, o);
		if (co < 0)
			return EXIT_USAGE;
		if (co)
			continue;
		switch (o) {
		case 'f': folio = optarg; break;
		case 'm': motivo = optarg; break;
		case 'h': usage_cancel(stdout); return EXIT_OK;
		default: usage_cancel(stderr); return EXIT_USAGE;
		}
	}
	if (!folio || !motivo || optind != argc || default_paths(&c)) {
		usage_cancel(stderr);
		return EXIT_USAGE;
	}
	if (!met_motivo_valid(motivo)) {
		fprintf(stderr, "titulos: motivo '%s' is not a cancellation motive: use R1, R2, R3, "
				"R4, R5 or C1 (see titulos cancel --help)\n", motivo);
		return EXIT_USAGE;
	}
	met_state *st = NULL;
	struct met_profile prof;
	struct met_title t;
	struct met_error e = { 0 };
	int status;
	memset(&prof, 0, sizeof(prof));
	if ((status = open_state(&c, &st)))
		return status;
	if (met_state_title_get(st, folio, &t, &e) != 0) {
		if (e.code == FIRMANTE_E_NOT_FOUND) {
			fprintf(stderr, "titulos: %s\n", e.message);
			status = EXIT_FINDINGS;
		} else {
			status = state_failed(&c, &e);
		}
		goto out;
	}
	if (strcmp(t.status, MET_ST_CANCELLED) == 0) {
		printf("%s: already cancelled (%s, %s)\n", folio, t.message, t.updated);
		status = EXIT_OK;
		goto out;
	}
	if (strcmp(t.status, MET_ST_REGISTERED) != 0) {
		fprintf(stderr, "titulos: %s: status %s: only a registered title can be cancelled\n",
			folio, t.status);
		status = EXIT_FINDINGS;
		goto out;
	}
	if ((status = load_profile(&c, &prof)))
		goto out;
	int codigo = 0, cancelled = 0, review = 0;
	char msg[MET_MAX_FIELD];
	if (met_cancela(&prof, folio, motivo, &codigo, msg, sizeof(msg), &cancelled, &review,
			&e) != 0) {
		fprintf(stderr, "titulos: %s\n", e.message);
		status = EXIT_FAILURE_IO;
		goto out;
	}
	if (met_state_title_cancelled(st, folio, motivo, codigo, msg, cancelled, review, &e)) {
		/* the DGP answered but the answer could not be recorded: say it */
		status = state_failed(&c, &e);
		fprintf(stderr, "titulos: %s: the DGP answered codigo %d (%s) but it is not "
				"recorded; run titulos cancel again once the database is usable\n",
			folio, codigo, msg);
		goto out;
	}
	if (cancelled == 1)
		printf("%s: cancelled (codigo %d): %s\n", folio, codigo, msg);
	else if (cancelled == 2)
		printf("%s: already cancelled at the DGP (codigo %d): %s\n", folio, codigo, msg);
	else
		fprintf(stderr, "titulos: %s: not cancelled (codigo %d): %s\n", folio, codigo, msg);
	if (review)
		fprintf(stderr, "titulos: %s: the DGP's answer was not recognised; check it by hand\n",
			folio);
	status = cancelled ? EXIT_OK : EXIT_FINDINGS;
out:
	met_profile_clear(&prof);
	close_state(&c, st);
	return status;
}

/* ---- report ------------------------------------------------------------- */

static void usage_report(FILE *o)
{
	fprintf(o,
		"Usage: titulos report [--state FILE]\n"
		"Counts of titles by status, and by career within each status; titles\n"
		"authenticated by DGAIR; a warning for each signer certificate recorded by\n"
		"titulos alta that expires within 60 days (docs/onboarding.md).\n\n%s",
		COMMON_HELP);
}

static int print_count(const char *status, const char *carrera, long n, void *arg)
{
	(void)arg;
	printf("%-15s %6ld  %s\n", status, n, carrera);
	return 0;
}

static int cmd_report(int argc, char **argv)
{
	static const struct option opts[] = { COMMON_OPTS, { NULL, 0, NULL, 0 } };
	struct common c = COMMON_INIT;
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int co = common_opt(&c, o);
		if (co < 0)
			return EXIT_USAGE;
		if (co)
			continue;
		if (o == 'h') {
			usage_report(stdout);
			return EXIT_OK;
		}
		usage_report(stderr);
		return EXIT_USAGE;
	}
	if (optind != argc || default_paths(&c)) {
		usage_report(stderr);
		return EXIT_USAGE;
	}
	met_state *st = NULL;
	struct met_error e = { 0 };
	if (met_state_open_wait(c.state, c.wait_lock, &st, &e))
		return state_failed(&c, &e);
	printf("%-15s %6s  %s\n", "status", "titles", "career");
	int rc = met_state_counts_each(st, print_count, NULL, &e), status = EXIT_OK;
	if (rc)
		status = state_failed(&c, &e);
	else if ((status = print_counts(&c, st)) == EXIT_OK)
		onboarding_report(st); /* authenticated titles, certificates expiring */
	met_state_close(st);
	return status;
}

/* Returns an exit status, or -1 when @cmd is not one of these commands. */
int titulos_cmd_met(const char *cmd, int argc, char **argv)
{
	if (strcmp(cmd, "submit") == 0)
		return cmd_submit(argc, argv);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc, argv);
	if (strcmp(cmd, "results") == 0)
		return cmd_results(argc, argv);
	if (strcmp(cmd, "cancel") == 0)
		return cmd_cancel(argc, argv);
	if (strcmp(cmd, "report") == 0)
		return cmd_report(argc, argv);
	return -1;
}

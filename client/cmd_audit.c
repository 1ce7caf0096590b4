/*
 * firmante audit show|verify: read the agent's audit log (JSON lines, each
 * holding its sequence number "seq" and the SHA-256 of the previous line
 * "prev"; <log>.head holds the last seq and hash) and check its chain.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "firmante/util.h"

#define LINE_MAX_BYTES (64u * 1024u)
#define PATH_BYTES 4096

static const char ZERO_HASH[] =
	"0000000000000000000000000000000000000000000000000000000000000000";

static int default_log(char *buf, size_t size)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(buf, size, "%s/firmante/audit.log", xdg);
	else if (home && home[0] == '/')
		n = snprintf(buf, size, "%s/.local/state/firmante/audit.log", home);
	else
		return -1;
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

static void audit_usage(FILE *f)
{
	fprintf(f,
		"Usage: firmante audit show [--file PATH] [--last N]\n"
		"       firmante audit verify [--file PATH]\n"
		"\n"
		"show    one line per record: number, time (UTC), caller, decision, result,\n"
		"        folioControl and certificate (--json: the records as written)\n"
		"verify  check the hash chain: any edited, removed or reordered line is\n"
		"        reported with its line number (exit status 1)\n"
		"\n"
		"--file PATH  the log (default $XDG_STATE_HOME/firmante/audit.log, else\n"
		"             ~/.local/state/firmante/audit.log; the agent's audit-log key)\n");
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

/* Read the head file: last seq and hash. Returns 0 when present. */
static int read_head(const char *log, unsigned long long *seq, char hash[65])
{
	char path[PATH_BYTES + 8], line[160];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s.head", log);
	f = fopen(path, "re");
	if (!f)
		return -1;
	ok = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	if (ok) {
		char *end = NULL;

		errno = 0;
		*seq = strtoull(line, &end, 10);
		ok = !errno && end != line && *end == ' ' && strlen(end + 1) >= 64 &&
		     strspn(end + 1, "0123456789abcdef") == 64;
		if (ok) {
			memcpy(hash, end + 1, 64);
			hash[64] = '\0';
		}
	}
	return ok ? 0 : -2;
}

/* Returns 0 when the chain is intact, 1 when broken, 3 when unreadable. */
static int verify(const char *path, int as_json)
{
	FILE *f;
	char *line = NULL, prev_hash[65], hash[65], head_hash[65], at_head[65], what[600];
	char note[200];
	size_t cap = 0;
	ssize_t n;
	unsigned long long lineno = 0, head_seq = 0;
	int status = 0, hrc;

	f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "firmante: the audit log %s cannot be opened: %s\n", path,
			strerror(errno));
		return 3;
	}
	/* The head first: the agent writes it after the records it names, so
	 * a log read after it is never shorter while the agent appends. */
	hrc = read_head(path, &head_seq, head_hash);
	memcpy(prev_hash, ZERO_HASH, sizeof(prev_hash));
	memcpy(at_head, ZERO_HASH, sizeof(at_head));
	what[0] = '\0';
	note[0] = '\0';
	while ((n = getline(&line, &cap, f)) > 0) {
		json_t *o;
		json_int_t seq;
		const char *prev;

		lineno++;
		if ((size_t)n > LINE_MAX_BYTES) {
			snprintf(what, sizeof(what), "line %llu: longer than %u bytes; not a record",
				 lineno, LINE_MAX_BYTES);
			break;
		}
		if (line[n - 1] != '\n') {
			snprintf(what, sizeof(what),
				 "line %llu: unfinished (no line end): the last write was cut or "
				 "the file was edited", lineno);
			break;
		}
		line[--n] = '\0';
		fm_sha256_hex(line, (size_t)n, hash);
		if (lineno == head_seq)
			memcpy(at_head, hash, sizeof(at_head));
		o = json_loads(line, 0, NULL);
		if (!o || !json_is_integer(json_object_get(o, "seq")) ||
		    !json_is_string(json_object_get(o, "prev"))) {
			json_decref(o);
			snprintf(what, sizeof(what),
				 "line %llu: not an audit record (it was edited or inserted)", lineno);
			break;
		}
		seq = json_integer_value(json_object_get(o, "seq"));
		prev = json_string_value(json_object_get(o, "prev"));
		if (seq < 0 || (unsigned long long)seq != lineno) {
			if (lineno == 1 && seq > 1)
				snprintf(what, sizeof(what),
					 "line 1: holds record %lld; the records before it were removed",
					 (long long)seq);
			else
				snprintf(what, sizeof(what),
					 "line %llu: holds record %lld where record %llu belongs: a line "
					 "was removed, inserted or moved here", lineno, (long long)seq,
					 lineno);
			json_decref(o);
			break;
		}
		if (strcmp(prev, prev_hash) != 0) {
			if (lineno == 1)
				snprintf(what, sizeof(what),
					 "line 1: its chain does not start at the beginning of a log");
			else
				snprintf(what, sizeof(what),
					 "line %llu: changed after it was written (line %llu holds another "
					 "SHA-256 for it)", lineno - 1, lineno);
			json_decref(o);
			break;
		}
		json_decref(o);
		memcpy(prev_hash, hash, sizeof(prev_hash));
	}
	free(line);
	if (!what[0] && ferror(f))
		snprintf(what, sizeof(what), "read error after line %llu", lineno);
	fclose(f);
	if (!what[0]) {
		if (hrc == -2)
			snprintf(what, sizeof(what), "%.500s.head: unreadable", path);
		else if (hrc == 0 && head_seq > lineno)
			snprintf(what, sizeof(what),
				 "line %llu: missing: the agent wrote %llu records and the log ends "
				 "after %llu (lines removed at the end)", lineno + 1, head_seq, lineno);
		else if (hrc == 0 && head_seq < lineno && head_seq > 0 &&
			 strcmp(at_head, head_hash) == 0)
			/* The agent syncs records before it updates the head
			 * file: a crash between the two leaves the head behind
			 * an intact chain (docs/security.md). */
			snprintf(note, sizeof(note),
				 "the head file names record %llu: the agent stopped (e.g. was "
				 "killed) before recording the last %llu record(s) there; the chain "
				 "verifies them", head_seq, lineno - head_seq);
		else if (hrc == 0 && head_seq < lineno && head_seq > 0)
			snprintf(what, sizeof(what),
				 "line %llu: changed after it was written (the head file holds "
				 "another SHA-256 for it)", head_seq);
		else if (hrc == 0 && head_seq < lineno)
			snprintf(what, sizeof(what),
				 "line %llu: not written by the agent (it wrote %llu records)",
				 head_seq + 1, head_seq);
		else if (hrc == 0 && lineno > 0 && strcmp(head_hash, prev_hash) != 0)
			snprintf(what, sizeof(what), "line %llu: changed after it was written",
				 lineno);
	}
	if (what[0])
		status = 1;
	if (as_json) {
		json_t *o = json_pack("{s:s, s:b, s:I, s:s, s:s}", "file", path, "intact", !status,
				      "lines", (json_int_t)lineno, "problem", what, "note", note);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

		if (s)
			printf("%s\n", s);
		free(s);
		json_decref(o);
	} else if (status) {
		printf("audit log %s is NOT intact: %s\n", path, what);
	} else {
		printf("audit log %s: %llu records, hash chain intact\n", path, lineno);
		if (note[0])
			printf("note: %s\n", note);
	}
	return status;
}

static int show(const char *path, int as_json, unsigned long last)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	unsigned long long total = 0, lineno = 0;

	f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "firmante: the audit log %s cannot be opened: %s\n", path,
			strerror(errno));
		return 3;
	}
	if (last) {
		while (getline(&line, &cap, f) > 0)
			total++;
		rewind(f);
	}
	if (!as_json)
		printf("%-6s %-20s %-28s %-14s %-22s %-12s %s\n", "#", "TIME (UTC)", "CALLER",
		       "DECISION", "RESULT", "FOLIO", "CERTIFICATE / ORIGIN");
	while (getline(&line, &cap, f) > 0) {
		json_t *o, *caller;
		char who[64];

		lineno++;
		if (last && total > last && lineno <= total - last)
			continue;
		if (as_json) {
			fputs(line, stdout);
			continue;
		}
		o = json_loads(line, 0, NULL);
		if (!o) {
			printf("%-6llu (not an audit record)\n", lineno);
			continue;
		}
		caller = json_object_get(o, "caller");
		if (json_string_value(json_object_get(caller, "origin")))
			snprintf(who, sizeof(who), "%s", jstr(caller, "origin"));
		else
			snprintf(who, sizeof(who), "uid %lld %s",
				 (long long)json_integer_value(json_object_get(caller, "uid")),
				 strrchr(jstr(caller, "exe"), '/') ? strrchr(jstr(caller, "exe"), '/') + 1
								  : jstr(caller, "exe"));
		printf("%-6llu %-20s %-28s %-14s %-22s %-12s %s\n", lineno, jstr(o, "time"), who,
		       jstr(o, "decision"), jstr(o, "result"), jstr(o, "folioControl"),
		       jstr(o, "noCertificado")[0] ? jstr(o, "noCertificado") : jstr(o, "origin"));
		json_decref(o);
	}
	free(line);
	fclose(f);
	return 0;
}

int cmd_audit(const char *socket_path, int as_json, int argc, char **argv)
{
	char path[PATH_BYTES];
	const char *sub, *file = NULL;
	unsigned long last = 0;

	(void)socket_path;
	if (argc < 2) {
		audit_usage(stderr);
		return 2;
	}
	sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		audit_usage(stdout);
		return 0;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--file") && i + 1 < argc) {
			file = argv[++i];
		} else if (!strcmp(argv[i], "--last") && i + 1 < argc && !strcmp(sub, "show")) {
			char *end = NULL;

			errno = 0;
			last = strtoul(argv[++i], &end, 10);
			if (errno || !end || *end || argv[i][0] == '-') {
				fprintf(stderr, "firmante audit: --last expects a number\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "--json")) {
			as_json = 1;
		} else {
			fprintf(stderr, "firmante audit: unexpected argument \"%s\"\n", argv[i]);
			audit_usage(stderr);
			return 2;
		}
	}
	if (!file) {
		if (default_log(path, sizeof(path)) != 0) {
			fprintf(stderr, "firmante audit: no default log (set HOME or use --file)\n");
			return 2;
		}
		file = path;
	}
	if (!strcmp(sub, "verify"))
		return verify(file, as_json);
	if (!strcmp(sub, "show"))
		return show(file, as_json, last);
	fprintf(stderr, "firmante audit: unknown subcommand \"%s\" (show or verify)\n", sub);
	audit_usage(stderr);
	return 2;
}

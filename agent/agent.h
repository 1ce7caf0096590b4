/*
 * firmanted internals (prefix agent_): configuration, the Unix-socket
 * listener, the HTTP front end, holder approval through pinentry.
 *
 * Not installed; the protocol contract is docs/protocol.md and
 * include/firmante/protocol.h.
 */
#ifndef FIRMANTE_AGENT_H
#define FIRMANTE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>
#include <time.h>

#include "firmante/token.h"

/* Caps of the configuration. */
#define AGENT_MAX_MODULES 32
#define AGENT_MAX_PINENTRY_ARGS 32
#define AGENT_PATH_MAX 4096
/* sizeof(((struct sockaddr_un *)0)->sun_path) on Linux. */
#define AGENT_SOCKET_PATH_MAX 108
#define AGENT_MAX_CLIENTS_LIMIT 1024
#define AGENT_MAX_APPROVAL_TIMEOUT 3600
#define AGENT_MAX_PIN_CACHE 8        /* tokens with a PIN cache */
#define AGENT_MAX_PIN_CACHE_SECONDS 3600

/* The agent's configuration ([agent] section of firmanted.conf). */
struct agent_config {
	char socket_path[AGENT_SOCKET_PATH_MAX];
	char *modules[AGENT_MAX_MODULES];   /* owned */
	size_t n_modules;
	bool use_p11kit_modules;            /* default true */
	char *pinentry_argv[AGENT_MAX_PINENTRY_ARGS + 1]; /* owned, NULL-terminated */
	size_t pinentry_argc;
	long approval_timeout;              /* seconds, default 120 */
	bool allow_extractable_keys;        /* default false */
	unsigned max_clients;               /* default 16 */
	char audit_log[AGENT_PATH_MAX];     /* "" = $XDG_STATE_HOME/firmante/audit.log */
	char policy_file[AGENT_PATH_MAX];   /* "" = no policy: everything interactive */
	unsigned browser_port;              /* 0 = browser listener off (default) */
	bool approval_queue;                /* approval = queue: `firmante approve` decides */
	long token_poll_interval;           /* seconds between token scans without USB events */
	long batch_pause_timeout;           /* seconds a batch waits for its token to return */
	char group[64];                     /* group = NAME: its members may use the agent too */
	gid_t group_gid;                    /* resolved at start; (gid_t)-1 without a group */
	struct {
		char token[33];             /* CKA token label or serial */
		long seconds;
	} pin_cache[AGENT_MAX_PIN_CACHE];  /* pin-cache = TOKEN:SECONDS (opt-in) */
	size_t n_pin_cache;
	char pairings_file[AGENT_PATH_MAX]; /* "" = $XDG_STATE_HOME/firmante/paired-origins */
	char source[AGENT_PATH_MAX];        /* file read, "" when defaults only */
};

/*
 * agent_config_defaults - fill @cfg with the built-in defaults (socket under
 * $XDG_RUNTIME_DIR, pinentry "pinentry", ...). Returns 0, FIRMANTE_E_CONFIG
 * (no usable runtime directory or path too long; @err says why),
 * FIRMANTE_E_NOMEM. Free with agent_config_clear().
 */
int agent_config_defaults(struct agent_config *cfg, char *err, size_t err_size);

/*
 * agent_config_default_path - $XDG_CONFIG_HOME/firmante/firmanted.conf, or
 * $HOME/.config/firmante/firmanted.conf. Returns 0 or FIRMANTE_E_CONFIG.
 */
int agent_config_default_path(char *buf, size_t size);

/*
 * agent_config_load - read @path (INI, libinih) over the defaults in @cfg.
 * @missing_ok: a file that does not exist leaves the defaults in place.
 * @err: on failure "FILE:LINE: message" (unknown key, bad value...).
 * Returns 0, FIRMANTE_E_CONFIG, FIRMANTE_E_NOMEM.
 */
int agent_config_load(struct agent_config *cfg, const char *path, bool missing_ok,
		      char *err, size_t err_size);

/* agent_config_clear - free what @cfg owns; NULL is a no-op. */
void agent_config_clear(struct agent_config *cfg);

/*
 * agent_listen_unix - create the socket's directory (0700) if needed,
 * refuse one that is not ours or is group/other accessible, remove a
 * stale socket, bind, chmod 0600 and listen.
 * @out_fd: the listening socket (close-on-exec), written on success.
 * Returns 0, FIRMANTE_E_CONFIG (unsafe directory, another agent is
 * listening, path unusable; @err says why), FIRMANTE_E_IO.
 */
int agent_listen_unix(const char *path, int backlog, int *out_fd, char *err, size_t err_size);

/*
 * agent_listen_unix_group - agent_listen_unix(), and with @gid other than
 * (gid_t)-1: the directory 0750 and the socket 0660, both of group @gid
 * (configuration "group"), so that the group's members can connect.
 */
int agent_listen_unix_group(const char *path, int backlog, gid_t gid, int *out_fd, char *err,
			    size_t err_size);

/* Who is calling: from SO_PEERCRED and /proc/<pid>/exe. */
struct agent_caller {
	uid_t uid;
	pid_t pid;
	gid_t gid;     /* primary group, from SO_PEERCRED */
	char exe[512]; /* "?" when unreadable; control characters replaced */
	char origin[256]; /* browser listener: the page's Origin; "" on the Unix socket */
};

/* What the holder is shown and asked for one signature. */
struct agent_approval {
	const struct agent_caller *caller;
	const struct fp11_identity *identity;
	const char *folio_control;
	const char *graduate_name;    /* "NOMBRE PRIMERAPELLIDO SEGUNDOAPELLIDO" */
	const char *graduate_curp;
	const char *nombre_carrera;
	const char *fecha_expedicion;
	const char *nombre_institucion;
	const char *cargo;            /* the signer's cargo in the document */
};

typedef struct agent_pinentry agent_pinentry;

/*
 * agent_pinentry_open - start the configured pinentry program (posix_spawn,
 * socketpair as its stdin/stdout, no shell) and greet it through libassuan.
 * @timeout: seconds each dialog may stay open; after that the program is
 *           killed and the dialog counts as denied.
 * @out: written on success; close with agent_pinentry_close().
 * Returns 0, FIRMANTE_E_PINENTRY, FIRMANTE_E_NOMEM.
 */
int agent_pinentry_open(const struct agent_config *cfg, agent_pinentry **out,
			char *detail, size_t detail_size);

/*
 * agent_pinentry_confirm - show the CONFIRM dialog for @a.
 * Returns 0 when the holder approved; FIRMANTE_E_USER_DENIED (no, cancel,
 * or timeout; @detail says which), FIRMANTE_E_PINENTRY.
 */
int agent_pinentry_confirm(agent_pinentry *p, const struct agent_approval *a,
			   char *detail, size_t detail_size);

/*
 * agent_pinentry_getpin - GETPIN for @tok; the PIN is written into @pin
 * (NUL-terminated, at most @pin_size - 1 bytes); internal copies are wiped.
 * Returns 0, FIRMANTE_E_USER_DENIED, FIRMANTE_E_PINENTRY.
 */
int agent_pinentry_getpin(agent_pinentry *p, const struct fp11_token_info *tok,
			  bool context_specific, const char *folio_control,
			  char *pin, size_t pin_size, char *detail, size_t detail_size);

/* agent_pinentry_close - BYE, release, reap the program. NULL is a no-op. */
void agent_pinentry_close(agent_pinentry *p);

/*
 * agent_pinentry_abort_all - at shutdown: kill the dialog on screen (its
 * request fails with FIRMANTE_E_PINENTRY) and refuse to open new ones.
 */
void agent_pinentry_abort_all(void);

/*
 * agent_pinentry_timed_out - whether the last dialog of @p ended because
 * nobody answered within the approval timeout (for the audit record).
 */
bool agent_pinentry_timed_out(const agent_pinentry *p);

/*
 * agent_pinentry_ask - a yes/no dialog with the text @desc (lines separated
 * by '\n'; control characters shown as blanks), buttons @ok and @cancel.
 * Returns 0 (yes), FIRMANTE_E_USER_DENIED (no, cancel, timeout),
 * FIRMANTE_E_PINENTRY.
 */
int agent_pinentry_ask(agent_pinentry *p, const char *desc, const char *ok, const char *cancel,
		       char *detail, size_t detail_size);

/* ------------------------------------------------------------------ */
/* audit log (audit.c) */

#define AGENT_AUDIT_LINE_MAX (64u * 1024u)

struct agent_audit;

/* One audit record; NULL or "" members are left out of the line. */
struct agent_audit_record {
	const char *event;          /* "sign", "pair", "revoke" */
	const struct agent_caller *caller;
	const char *policy;         /* policy section name, unattended callers */
	const char *key;            /* PKCS#11 URI of the key */
	const char *no_certificado;
	const char *folio_control;
	const char *cadena_sha256;  /* lower-case hex */
	const char *origin;         /* pairing events */
	const char *batch;          /* batch id, for the items of a batch */
	const char *decision;       /* approved, denied, timeout, cancelled, unattended, refused, not-asked */
	const char *result;         /* "signed", "paired", ... or an error code */
};

/*
 * agent_audit_open - open (create: directories 0700, file 0600) the audit
 * log at @path for appending and read its last record to continue the
 * hash chain. Refuses a log that is not ours, is group/other accessible,
 * or ends in an unfinished or foreign line (@err says which).
 * @out: written on success; close with agent_audit_close().
 * Returns 0, FIRMANTE_E_CONFIG, FIRMANTE_E_IO, FIRMANTE_E_NOMEM.
 */
int agent_audit_open(const char *path, struct agent_audit **out, char *err, size_t err_size);

/* agent_audit_close - close the log; NULL is a no-op. */
void agent_audit_close(struct agent_audit *a);

/* agent_audit_path - the log's path ("" for NULL). */
const char *agent_audit_path(const struct agent_audit *a);

/*
 * agent_audit_append - write one record (JSON object on one line, members
 * seq, time, event, caller, ..., decision, result, prev = SHA-256 of the
 * previous line or 64 zeros) with one write(2) and one fdatasync(2) (which
 * also makes durable any record written before it, deferred or another
 * thread's; a thread whose record an fdatasync already covered does not
 * sync again: group commit), then rewrite
 * <log>.head in place (no sync of its own; docs/security.md). Serialised between
 * threads. NULL @a is a no-op (returns 0).
 * Returns 0, FIRMANTE_E_IO (the caller must then withhold the signature),
 * FIRMANTE_E_NOMEM.
 */
int agent_audit_append(struct agent_audit *a, const struct agent_audit_record *r);

/*
 * agent_audit_append_deferred - agent_audit_append() without the
 * fdatasync: the record is written (write(2)) but not yet durable. The
 * caller must call agent_audit_sync() (or another append must happen) and
 * succeed before anything that depends on the record (a signature) leaves
 * the agent. For the group commit of a batch. Same errors.
 */
int agent_audit_append_deferred(struct agent_audit *a, const struct agent_audit_record *r);

/*
 * agent_audit_sync - make every record written so far durable (one
 * fdatasync; nothing when none is pending), then update <log>.head.
 * Returns 0 or FIRMANTE_E_IO (the deferred records' signatures must then
 * be withheld). NULL @a: 0.
 */
int agent_audit_sync(struct agent_audit *a);

/* agent_audit_default_path - $XDG_STATE_HOME/firmante/audit.log, else
 * $HOME/.local/state/firmante/audit.log. Returns 0 or FIRMANTE_E_CONFIG. */
int agent_audit_default_path(char *buf, size_t size);

/*
 * agent_audit_count_signed_today - records of @path with policy @policy,
 * result "signed" and a time in the current UTC day. A missing file
 * counts 0. Returns 0 (*@out written) or FIRMANTE_E_IO.
 */
int agent_audit_count_signed_today(const char *path, const char *policy, unsigned long *out);

/* ------------------------------------------------------------------ */
/* caller policies (policy.c) */

#define AGENT_MAX_POLICIES 32
#define AGENT_MAX_POLICY_KEYS 16
#define AGENT_MAX_DAILY_CAP 100000
#define AGENT_PIN_MAX 64

struct agent_policy {
	char name[64];
	uid_t uid;
	bool uid_set;
	char exe[AGENT_PATH_MAX];
	bool unattended;
	unsigned long daily_cap;
	char keys[AGENT_MAX_POLICY_KEYS][21]; /* noCertificado */
	size_t n_keys;
	char pin_file[AGENT_PATH_MAX];
	char pin_credential[256];
	/* runtime, guarded by the set's lock */
	unsigned long signed_today;
	char day[16];
};

struct agent_policy_set;

/*
 * agent_policy_load - read the policy file @path (INI: [caller NAME]
 * sections with uid, exe, mode, daily-cap, key, pin-file, pin-credential).
 * The file must belong to root or to us and not be group/other writable.
 * An empty or NULL @path gives an empty set (everything interactive).
 * @audit_path: the audit log, from which daily counts are taken.
 * Returns 0, FIRMANTE_E_CONFIG ("FILE:LINE: message" in @err), FIRMANTE_E_NOMEM.
 */
int agent_policy_load(const char *path, const char *audit_path, struct agent_policy_set **out,
		      char *err, size_t err_size);

/* agent_policy_free - NULL is a no-op. */
void agent_policy_free(struct agent_policy_set *set);

size_t agent_policy_count(const struct agent_policy_set *set);
const struct agent_policy *agent_policy_get(const struct agent_policy_set *set, size_t i);

/* agent_policy_match - the section for @caller's uid and executable, or
 * NULL. Browser callers (origin set) never match. */
const struct agent_policy *agent_policy_match(const struct agent_policy_set *set,
					      const struct agent_caller *caller);

/* agent_policy_allows_key - @no_certificado is among the policy's keys. */
bool agent_policy_allows_key(const struct agent_policy *p, const char *no_certificado);

/*
 * agent_policy_reserve - count one signature against the daily cap.
 * Returns 0, or FIRMANTE_E_POLICY_LIMIT (cap reached; @detail says so).
 */
int agent_policy_reserve(struct agent_policy_set *set, const struct agent_policy *p,
			 char *detail, size_t detail_size);

/* agent_policy_release - undo one agent_policy_reserve() (nothing signed). */
void agent_policy_release(struct agent_policy_set *set, const struct agent_policy *p);

/*
 * agent_policy_read_pin - the PIN of an unattended caller, from its
 * pin-file or from $CREDENTIALS_DIRECTORY/<pin-credential>. The file must
 * be a regular file (no symbolic link) of root or of us, mode 0600 or 0400,
 * holding one PIN (a final newline is dropped). Internal copies are wiped.
 * Returns 0, FIRMANTE_E_CONFIG (@detail names the rule broken), FIRMANTE_E_IO.
 */
int agent_policy_read_pin(const struct agent_policy *p, char *pin, size_t pin_size,
			  char *detail, size_t detail_size);

/* ------------------------------------------------------------------ */
/* paired browser origins (pairing.c) */

#define AGENT_MAX_PAIRINGS 64
#define AGENT_ORIGIN_MAX 200

struct agent_pairings;

/* agent_origin_valid - "http(s)://host[:port]", lower-case host, no path. */
bool agent_origin_valid(const char *origin);

/*
 * agent_pairings_open - load the paired origins from @path (missing: none).
 * The file must be ours, mode 0600. Returns 0, FIRMANTE_E_CONFIG, FIRMANTE_E_NOMEM.
 */
int agent_pairings_open(const char *path, struct agent_pairings **out, char *err, size_t err_size);
void agent_pairings_free(struct agent_pairings *ps);
bool agent_pairings_has(struct agent_pairings *ps, const char *origin);
/* agent_pairings_check - @token (64 hex) is the one issued to @origin
 * (constant-time comparison of SHA-256 values). */
bool agent_pairings_check(struct agent_pairings *ps, const char *origin, const char *token);
/*
 * agent_pairings_add - pair @origin (replacing an earlier token) and save.
 * @token: receives the new token (64 hex + NUL); only its hash is kept.
 * Returns 0, FIRMANTE_E_BAD_REQUEST (origin malformed), FIRMANTE_E_INVALID
 * (AGENT_MAX_PAIRINGS reached), FIRMANTE_E_IO, FIRMANTE_E_INTERNAL.
 */
int agent_pairings_add(struct agent_pairings *ps, const char *origin, char token[65]);
/* agent_pairings_revoke - forget @origin. Returns 0, FIRMANTE_E_NOT_FOUND, FIRMANTE_E_IO. */
int agent_pairings_revoke(struct agent_pairings *ps, const char *origin);
/* agent_pairings_json - [{"origin", "paired"}], new reference. */
struct json_t;
struct json_t *agent_pairings_json(struct agent_pairings *ps);

/* The running agent, shared by every connection thread. */
struct agent {
	const struct agent_config *cfg;
	fp11_ctx *p11;
	time_t started;
	struct agent_audit *audit;
	struct agent_policy_set *policies;
	struct agent_pairings *pairings;
	struct agent_hotplug *hotplug;  /* tokens arriving and leaving (hotplug.h) */
};

/* ------------------------------------------------------------------ */
/* the PIN cache (pincache.c), opt-in per token */

/*
 * agent_pincache_start - with cfg->n_pin_cache > 0: lock the cache in
 * memory and start the watcher that wipes entries whose time is up or whose
 * token is gone (tokens listed every 2 s while anything is cached).
 * Returns 0 or FIRMANTE_E_INTERNAL (no thread).
 */
int agent_pincache_start(const struct agent_config *cfg, fp11_ctx *p11);

/* agent_pincache_stop - stop the watcher and wipe every entry. */
void agent_pincache_stop(void);

/* agent_pincache_get - the cached PIN of @tok (copied into @pin) when its
 * token has pin-cache configured and the entry is alive. */
bool agent_pincache_get(const struct fp11_token_info *tok, char *pin, size_t pin_size);

/* agent_pincache_put - keep @pin (a PIN @tok accepted) for the configured
 * time; nothing for a token without pin-cache. */
void agent_pincache_put(const struct fp11_token_info *tok, const char *pin);

/* agent_pincache_owner - when @tok has a live entry: its login owner tag
 * ("pin-cache:<n>", for fp11_sign_as) written to @owner, and true. The
 * token's login kept under that tag is dropped (fp11_drop_login) when the
 * entry is wiped: expiry, token removal, refusal, replacement. */
bool agent_pincache_owner(const struct fp11_token_info *tok, char *owner, size_t size);

/* agent_pincache_forget - wipe @tok's entry (refused PIN, locked token). */
void agent_pincache_forget(const struct fp11_token_info *tok);

/* ------------------------------------------------------------------ */
/* the approval queue (approval.c), configuration "approval = queue" */

#define AGENT_MAX_PENDING 64

/* agent_approval_content - what the holder is shown, as JSON (new reference). */
struct json_t *agent_approval_content(const struct agent_approval *ap);

/*
 * agent_queue_wait - put @content (reference stolen) in the queue and wait
 * for `firmante approve`, at most cfg->approval_timeout seconds. The wait
 * ends early, cancelled, when the client on @client_fd (-1: not watched)
 * closes its connection.
 * @decision: "approved", "denied", "timeout", "cancelled" or "not-asked".
 * Returns 0 (approved), FIRMANTE_E_USER_DENIED (@detail says which),
 * FIRMANTE_E_BUSY (AGENT_MAX_PENDING waiting already), FIRMANTE_E_NOMEM.
 */
int agent_queue_wait(const struct agent_config *cfg, struct json_t *content, int client_fd,
		     const char **decision, char *detail, size_t detail_size);

/* agent_queue_list - the waiting requests, oldest first (new reference). */
struct json_t *agent_queue_list(void);

/*
 * agent_queue_decide - approve (or deny) request @id, or every waiting one
 * when @all. @count: how many were decided.
 * Returns 0, or FIRMANTE_E_NOT_FOUND (no waiting request @id).
 */
int agent_queue_decide(unsigned long id, bool all, bool approve, size_t *count);

/* agent_queue_close - at shutdown: cancel every waiting request, take no more. */
void agent_queue_close(void);

/* ------------------------------------------------------------------ */
/* the signing path (sign.c) */

#define AGENT_MAX_BATCH 1000
#define AGENT_BATCH_GROUP 16  /* batch items whose audit records share one fdatasync */
#define AGENT_BATCH_GROUP_MS 10 /* ... started within this many milliseconds */

/*
 * A batch the holder approved once (POST /v1/sign-batch). The PIN asked
 * for its first signature is kept here, and only here, until the batch
 * ends (agent_batch_end wipes it); a PIN the token refuses ends the batch.
 */
struct agent_batch {
	char id[40];                 /* "batch-<n>", in the audit records; also the
	                              * owner of the token login kept for the batch */
	struct fp11_token_info token; /* the batch's token, for ending that login */
	bool unattended;             /* approved by policy, not by the holder */
	agent_pinentry *pe;          /* the dialog, kept for the PIN */
	char pin[AGENT_PIN_MAX + 1];
	bool have_pin;
};

/* One signature: what is shown, what is signed, what comes out. */
struct agent_sign_job {
	const struct agent_caller *caller;
	const struct agent_approval *approval; /* identity and title shown */
	const char *cadena;                    /* the cadena original (UTF-8) */
	size_t cadena_len;
	const char *cadena_sha256;             /* its SHA-256, lower-case hex */
	int client_fd;                         /* the requester's connection, or -1 */
	struct agent_batch *batch;             /* an item of an approved batch, or NULL */
	bool defer_audit_sync;                 /* the caller calls agent_audit_sync() before
	                                        * the signature leaves (batch group commit) */
	uint8_t sig[1024];                     /* out */
	size_t sig_len;                        /* out */
	char detail[1024];                     /* out, on failure */
};

/*
 * agent_sign_one - the signing path for one cadena: decide (unattended
 * policy; else the holder through pinentry CONFIRM), PIN (policy PIN file,
 * pinentry GETPIN or the PIN pad), C_Sign on the token, verify the
 * signature against the certificate, append the audit record. Nothing
 * reaches the token before the decision. A signature whose audit record
 * could not be written is withheld.
 * Returns 0 (job->sig, job->sig_len set), or the error with job->detail:
 * FIRMANTE_E_USER_DENIED, FIRMANTE_E_POLICY_LIMIT, FIRMANTE_E_FORBIDDEN
 * (key not allowed to the policy), FIRMANTE_E_PIN_*, FIRMANTE_E_TOKEN*,
 * FIRMANTE_E_PINENTRY, FIRMANTE_E_CONFIG, FIRMANTE_E_IO, ...
 */
int agent_sign_one(struct agent *a, struct agent_sign_job *job);

/*
 * agent_approve_batch - the one decision for a batch: an unattended policy
 * of @caller, else the holder through the approval queue or a pinentry
 * dialog showing @text (the manifest); @manifest (borrowed) is what the
 * queue shows. Writes one audit record (event "sign-batch").
 * @b: filled on approval (id, unattended, the open dialog); release with
 *     agent_batch_end().
 * Returns 0, FIRMANTE_E_USER_DENIED, FIRMANTE_E_PINENTRY, FIRMANTE_E_BUSY,
 * FIRMANTE_E_NOMEM, FIRMANTE_E_IO (audit record not written).
 */
int agent_approve_batch(struct agent *a, const struct agent_caller *caller,
			const struct fp11_identity *id, struct json_t *manifest, const char *text,
			struct agent_batch *b, char *detail, size_t detail_size);

/*
 * agent_batch_end - close the batch's dialog and wipe its PIN; write the
 * closing audit record with @result ("completed", "cancelled", an error
 * code) and the counts. NULL @b is a no-op.
 */
void agent_batch_end(struct agent *a, const struct agent_caller *caller, struct agent_batch *b,
		     const char *result, size_t signed_count, size_t total);

/*
 * agent_pair_origin - ask the holder (pinentry, one dialog at a time) to
 * pair the web page @caller->origin, showing the origin and the 6-digit
 * @code the page displays; on "yes" store a new token for the origin and
 * write it to @token (64 hex + NUL). Audited either way. A second pairing
 * request while a dialog is open is refused at once (no queue of dialogs
 * a page could pile up).
 * Returns 0, FIRMANTE_E_USER_DENIED, FIRMANTE_E_PINENTRY, FIRMANTE_E_FORBIDDEN
 * (a dialog is already open), or an error of agent_pairings_add().
 */
int agent_pair_origin(struct agent *a, const struct agent_caller *caller, const char *code,
		      char token[65], char *detail, size_t detail_size);

/*
 * agent_http_start_browser - serve the protocol for browser pages on
 * 127.0.0.1:cfg->browser_port (loopback only) with the Host, Origin,
 * pairing-token and custom-header checks of docs/security.md.
 * Returns 0, FIRMANTE_E_CONFIG (port taken; @err says so), FIRMANTE_E_IO,
 * FIRMANTE_E_INTERNAL.
 */
struct MHD_Daemon;
int agent_http_start_browser(struct agent *agent, struct MHD_Daemon **out, char *err,
			     size_t err_size);

struct MHD_Daemon;

/*
 * agent_http_start - serve the protocol on @listen_fd (which the daemon
 * then owns) with libmicrohttpd: a thread per connection, connection limit
 * cfg->max_clients. Returns 0 or FIRMANTE_E_INTERNAL.
 */
int agent_http_start(struct agent *agent, int listen_fd, struct MHD_Daemon **out);

/* agent_http_stop - stop serving; NULL is a no-op. */
void agent_http_stop(struct MHD_Daemon *d);

/*
 * agent_log - one line on stderr: UTC time, then the formatted text.
 * Serialised between threads. Never pass a PIN or document content.
 */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* agent_sanitize - replace control characters of @s (in place) by '?'. */
void agent_sanitize(char *s);

#endif

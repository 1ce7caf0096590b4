/*
 * Lot state of the submitter (prefix met_state_): titles, lots and an
 * event history. One narrow interface; this build's backend is SQLite in
 * WAL mode (state.c). A shared backend (PostgreSQL) for several registrars
 * implements the same functions.
 *
 * Every function that changes something is one transaction: either all of
 * its changes and its event rows are stored, or none.
 *
 * Title status: built -> signed -> verified -> upload-unknown -> uploaded
 * -> registered | rejected; registered -> cancelled. "upload-unknown" means
 * the title was handed to a carga whose outcome is not known (from the
 * moment the request may leave until the lot number is recorded); a later
 * lot's result settles it (met-web-service.md §3, §11.4).
 */
#ifndef FIRMANTE_MET_STATE_H
#define FIRMANTE_MET_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "firmante/protocol.h"
#include "met.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct met_state met_state;

#define MET_ST_BUILT "built"
#define MET_ST_SIGNED "signed"
#define MET_ST_VERIFIED "verified"
#define MET_ST_UPLOAD_UNKNOWN "upload-unknown"
#define MET_ST_UPLOADED "uploaded"
#define MET_ST_REGISTERED "registered"
#define MET_ST_REJECTED "rejected"
#define MET_ST_CANCELLED "cancelled"

/* Lot status: sending (the carga may be in flight), accepted (numeroLote
 * known), processed (results recorded), refused (carga answered without a
 * lot number), unknown (outcome of the carga not known). */
#define MET_LOT_SENDING "sending"
#define MET_LOT_ACCEPTED "accepted"
#define MET_LOT_PROCESSED "processed"
#define MET_LOT_REFUSED "refused"
#define MET_LOT_UNKNOWN "unknown"

struct met_title {
	char folio[128];
	char curp[32];
	char carrera[256];      /* cveCarrera and nombreCarrera, "103339 INGENIERÍA ..." */
	char status[24];
	char path[4096];
	char sha256[65];        /* of the XML file */
	char message[1024];     /* last message (the DGP's DESCRIPCION verbatim) */
	int64_t lot_id;         /* last lot, 0 = none */
	char numero_lote[32];   /* of that lot, "" when unknown */
	int uploads;            /* how many lots the title was put in */
	char updated[32];       /* UTC, ISO 8601 */
};

struct met_lot {
	int64_t id;
	char numero_lote[32];
	char status[16];
	char zip_path[4096];
	char zip_sha256[65];
	char result_path[4096];
	char message[1024];
	int titles;
	int polls;
	char created[32], sent[32], updated[32];
};

/*
 * Errors about the database file itself, returned by every function of
 * this interface (in err->code as well):
 * MET_STATE_E_LOCKED: another connection held a lock longer than the wait
 *   given at open (SQLITE_BUSY / SQLITE_LOCKED, sqlite.org/rescode.html).
 *   The function changed nothing (its transaction was not begun or was
 *   rolled back). err->message names the file and, when /proc/locks shows
 *   it, the process holding the lock.
 * MET_STATE_E_DAMAGED: SQLite found the file damaged or not a database
 *   (SQLITE_CORRUPT, SQLITE_NOTADB, or PRAGMA quick_check not "ok" at
 *   open). Nothing is written to the file, and no WAL checkpoint is made
 *   when it is closed (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE).
 * met_state_advice() prints what a registrar should do about either.
 */
#define MET_STATE_E_LOCKED FIRMANTE_E_BUSY
#define MET_STATE_E_DAMAGED FIRMANTE_E_BAD_DOCUMENT

/* Seconds met_state_open() waits for a lock; the most met_state_open_wait() accepts. */
#define MET_STATE_WAIT_DEFAULT 10u
#define MET_STATE_WAIT_MAX 3600u

/*
 * met_state_open_wait - open or create the database at @path (and its
 * parent directory, mode 0700): PRAGMA quick_check first (reads only),
 * then WAL journal, schema created or checked.
 * @wait_s: seconds each statement waits for a lock held by another
 *   connection (sqlite3_busy_timeout), 0 to MET_STATE_WAIT_MAX.
 * @out: written on success; close with met_state_close().
 * Returns 0, FIRMANTE_E_IO (cannot open or create: @err says why),
 * FIRMANTE_E_CONFIG (no path, a path over 4095 bytes, a file of another
 * kind or schema), FIRMANTE_E_INVALID (@wait_s too large),
 * MET_STATE_E_LOCKED, MET_STATE_E_DAMAGED, FIRMANTE_E_NOMEM.
 */
int met_state_open_wait(const char *path, unsigned wait_s, met_state **out,
			struct met_error *err);

/* met_state_open - met_state_open_wait() with MET_STATE_WAIT_DEFAULT. */
int met_state_open(const char *path, met_state **out, struct met_error *err);

/*
 * met_state_lock_holder - the process holding a write lock on the
 * database @path, its -shm file (WAL) or its ".lock" file (titulos' run
 * lock), as listed in /proc/locks (proc(5)); this process is not counted.
 * @holder: receives "process PID (COMM)", or "" when none is found; may be
 *   NULL when @size is 0. @size: bytes at @holder.
 * Returns the PID, or 0 when none is found or /proc/locks is unreadable.
 */
long met_state_lock_holder(const char *path, char *holder, size_t size);

/*
 * met_state_advice - for err->code MET_STATE_E_LOCKED or
 * MET_STATE_E_DAMAGED, print to @out what to do (wait and retry; restore
 * from a backup or `sqlite3 FILE .recover` into a new file and --state);
 * nothing for other codes. @path: the database file.
 */
void met_state_advice(FILE *out, const char *path, const struct met_error *err);

/* met_state_close - NULL is a no-op. */
void met_state_close(met_state *st);

/*
 * met_state_title_record - record a title at a pre-upload stage (built,
 * signed or verified): new folios are inserted; a known folio moves forward
 * only while it is not uploaded (a newer signed file replaces the older
 * one before upload).
 * Returns 0; FIRMANTE_E_INVALID when the folio is already past verified
 * with a different SHA-256 (another document under a folio already sent:
 * err says which); FIRMANTE_E_IO; FIRMANTE_E_NOMEM.
 */
int met_state_title_record(met_state *st, const struct met_title *t, struct met_error *err);

/* met_state_title_get - the title of @folio. Returns 0, FIRMANTE_E_NOT_FOUND, FIRMANTE_E_IO. */
int met_state_title_get(met_state *st, const char *folio, struct met_title *out,
			struct met_error *err);

/*
 * met_state_titles_each - call @fn for each title (ordered by folio) whose
 * status is one of @statuses (NULL-terminated list; NULL = all); stops
 * when @fn returns non-zero and returns that value.
 */
int met_state_titles_each(met_state *st, const char *const *statuses,
			  int (*fn)(const struct met_title *, void *), void *arg,
			  struct met_error *err);

/* met_state_lots_each - likewise for lots, ordered by id; @statuses as above. */
int met_state_lots_each(met_state *st, const char *const *statuses,
			int (*fn)(const struct met_lot *, void *), void *arg,
			struct met_error *err);

/*
 * met_state_recover - lots left "sending" by an interrupted run become
 * "unknown" (their titles stay upload-unknown). Returns 0 or FIRMANTE_E_IO.
 * @count: may be NULL; receives how many lots changed.
 */
int met_state_recover(met_state *st, int *count, struct met_error *err);

/*
 * met_state_lot_begin - before a carga: a new lot "sending" with its ZIP
 * path and SHA-256; each folio moves to upload-unknown in that lot
 * (uploads + 1). Folios must be verified or upload-unknown.
 * @lot_id: written on success.
 * Returns 0, FIRMANTE_E_INVALID (a folio in another status), FIRMANTE_E_IO.
 */
int met_state_lot_begin(met_state *st, const char *const *folios, size_t n,
			const char *zip_path, const char *zip_sha256, int64_t *lot_id,
			struct met_error *err);

/* met_state_lot_accepted - the carga gave @numero: lot accepted, its
 * titles uploaded. */
int met_state_lot_accepted(met_state *st, int64_t lot_id, const char *numero,
			   const char *mensaje, struct met_error *err);

/* met_state_lot_refused - the carga was refused (no lot number): the lot
 * is refused and its titles go back to verified with @mensaje. */
int met_state_lot_refused(met_state *st, int64_t lot_id, const char *mensaje,
			  struct met_error *err);

/* met_state_lot_unknown - the carga's outcome is unknown: the lot is
 * unknown, its titles stay upload-unknown with @mensaje. */
int met_state_lot_unknown(met_state *st, int64_t lot_id, const char *mensaje,
			  struct met_error *err);

/* met_state_lot_polled - record a consulta/descarga answer (polls + 1). */
int met_state_lot_polled(met_state *st, int64_t lot_id, const char *mensaje,
			 struct met_error *err);

/*
 * met_state_lot_results - record a lot's result rows and mark it processed.
 * Per row, for a title of this lot: ESTATUS 1 -> registered; ESTATUS 2
 * with "previamente registrado" for a title this state already put in an
 * earlier lot (uploads > 1) -> registered (our own earlier upload got
 * through, §11.4); other ESTATUS 2 -> rejected; a title already registered
 * stays registered. DESCRIPCION is kept verbatim.
 * @result_path: where the result ZIP was stored.
 * Returns 0, FIRMANTE_E_IO.
 */
int met_state_lot_results(met_state *st, int64_t lot_id, const struct met_result_row *rows,
			  size_t n, const char *result_path, struct met_error *err);

/* met_state_title_cancelled - record a cancel answer for @folio:
 * @cancelled 1 or 2 -> status cancelled; always an event with codigo and
 * mensaje (and "review" when @review). Returns 0, FIRMANTE_E_NOT_FOUND,
 * FIRMANTE_E_IO. */
int met_state_title_cancelled(met_state *st, const char *folio, const char *motivo,
			      int codigo, const char *mensaje, int cancelled, int review,
			      struct met_error *err);

/* met_state_counts_each - @fn(status, carrera, count) per status and
 * career, ordered. */
int met_state_counts_each(met_state *st,
			  int (*fn)(const char *status, const char *carrera, long count, void *),
			  void *arg, struct met_error *err);

/* ==== Onboarding (docs/onboarding.md; met-web-service.md §9, §10) ==== */

/* A MET profile marked ready (titulos perfil listo PERFIL). */
struct met_perfil {
	char perfil[32];        /* "produccion", "qa", ... */
	int listo;              /* 1 ready, 0 withdrawn */
	char fecha[32];         /* when marked, UTC ISO 8601 */
	char usuario[64];       /* login name of who marked it */
	char nota[512];
};

/*
 * met_state_perfil_set - record that @perfil is (@listo 1) or is no longer
 * (0) ready, with the date and @usuario (who did it) and an optional @nota;
 * an event row keeps the history. §10.4-5: production credentials only
 * after a successful QA phase.
 * Returns 0, FIRMANTE_E_INVALID (no profile name), FIRMANTE_E_IO.
 */
int met_state_perfil_set(met_state *st, const char *perfil, int listo, const char *usuario,
			 const char *nota, struct met_error *err);

/* met_state_perfil_get - the record of @perfil; @out written on success.
 * Returns 0, FIRMANTE_E_NOT_FOUND (never marked), FIRMANTE_E_IO. */
int met_state_perfil_get(met_state *st, const char *perfil, struct met_perfil *out,
			 struct met_error *err);

/* One titulos qa-check run. */
struct met_qa_check {
	char fecha[32];             /* UTC ISO 8601; set by the state on record */
	char url[1024];             /* the QA service's address */
	char cve_institucion[16];
	int listo;                  /* 1 when every signer and career passed */
	char resumen[2048];         /* one line per signer and career */
};

/* met_state_qa_record - store a QA check's outcome (fecha is set here).
 * Returns 0, FIRMANTE_E_IO. */
int met_state_qa_record(met_state *st, const struct met_qa_check *q, struct met_error *err);

/* met_state_qa_last - the latest QA check. Returns 0, FIRMANTE_E_NOT_FOUND,
 * FIRMANTE_E_IO. */
int met_state_qa_last(met_state *st, struct met_qa_check *out, struct met_error *err);

/* A signer's certificate handed to the DGP (titulos alta). */
struct met_certificado {
	char curp[32];
	char no_certificado[24];
	char not_after[32];     /* YYYY-MM-DD */
	char firmante[128];     /* the configuration's [firmante NAME] */
	char fecha[32];         /* when recorded, UTC */
};

/* met_state_certificado_record - store (or refresh) a certificate.
 * Returns 0, FIRMANTE_E_IO. */
int met_state_certificado_record(met_state *st, const struct met_certificado *c,
				 struct met_error *err);

/* met_state_certificados_each - @fn per certificate, earliest expiry
 * first; stops when @fn returns non-zero and returns that value. */
int met_state_certificados_each(met_state *st,
				int (*fn)(const struct met_certificado *, void *), void *arg,
				struct met_error *err);

/* A title authenticated by DGAIR or a state authority (§9;
 * titulo-electronico.md §11). */
struct met_autenticado {
	char folio[128];
	char folio_digital[64];
	char fecha_autenticacion[32];
	char no_certificado_autoridad[24];
	char path[4096];        /* the authenticated XML as imported */
	char sha256[65];        /* of that file */
	char fecha[32];         /* when imported, UTC */
};

/* met_state_autenticado_record - store (or replace) the authenticated
 * version of a title. Returns 0, FIRMANTE_E_IO. */
int met_state_autenticado_record(met_state *st, const struct met_autenticado *a,
				 struct met_error *err);

/* met_state_autenticado_get - Returns 0, FIRMANTE_E_NOT_FOUND, FIRMANTE_E_IO. */
int met_state_autenticado_get(met_state *st, const char *folio, struct met_autenticado *out,
			      struct met_error *err);

/* met_state_autenticados_count - how many titles are authenticated.
 * Returns 0, FIRMANTE_E_IO; @count written on success. */
int met_state_autenticados_count(met_state *st, long *count, struct met_error *err);

#ifdef __cplusplus
}
#endif
#endif

/*
 * The title room's builder and checker API (submitter/, prefix titulo_):
 * building a Título Electrónico model from scratch, the DGP catalogs, the
 * institution configuration, the graduates' CSV, text normalization, input
 * rules and verification of signed documents.
 *
 * Source of the rules: ../shared/spec/titulo-electronico.md (section
 * numbers below refer to it). The document model itself, parsing, the
 * cadena original and serialization are in titulo.h.
 *
 * Conventions: functions return 0 or a negative enum firmante_err value;
 * output parameters are written only on success; *_free(NULL) is a no-op.
 * All strings are UTF-8 and NUL-terminated.
 */
#ifndef FIRMANTE_TITULO_BUILD_H
#define FIRMANTE_TITULO_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "firmante/titulo.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Building a model ============================================== */

/*
 * titulo_new - an empty document: TituloElectronico with version "1.0"
 * (§3), every single-occurrence element of §2 present without attributes
 * (Autenticacion absent: the builder never writes it, §11), no
 * FirmaResponsable yet.
 * @out: written on success; free with titulo_free().
 * Returns 0 or FIRMANTE_E_NOMEM.
 */
int titulo_new(titulo **out);

/*
 * titulo_set_attr - set or remove an attribute of a single-occurrence
 * element.
 * @element: "TituloElectronico", "Institucion", "Carrera", "Profesionista",
 *           "Expedicion" or "Antecedente" (Autenticacion is refused, §11).
 * @name: an attribute the XSD declares for that element (§3).
 * @value: copied; NULL or "" removes the attribute (an empty attribute is
 *         never written, §12). The value is taken as is: normalize it first
 *         (titulo_normalize) and never pre-escape it (§13.5).
 * Returns 0, FIRMANTE_E_BAD_REQUEST (unknown element or attribute),
 * FIRMANTE_E_INVALID (not UTF-8, or a character XML 1.0 forbids),
 * FIRMANTE_E_NOMEM.
 */
int titulo_set_attr(titulo *t, const char *element, const char *name, const char *value);

/*
 * titulo_firmante_add - append a FirmaResponsable (document order is the
 * order of calls). @index: receives its 0-based index; may be NULL.
 * Returns 0, FIRMANTE_E_TOO_LARGE (more than 32 signers), FIRMANTE_E_NOMEM.
 */
int titulo_firmante_add(titulo *t, size_t *index);

/*
 * titulo_firmante_set_attr - as titulo_set_attr() for FirmaResponsable @i.
 * Returns as titulo_set_attr(); FIRMANTE_E_BAD_REQUEST also when @i is out
 * of range.
 */
int titulo_firmante_set_attr(titulo *t, size_t i, const char *name, const char *value);

/* titulo_element_present - 1 when @element is in the document, else 0. */
int titulo_element_present(const titulo *t, const char *element);

/* titulo_element_line, titulo_firmante_line - 1-based line of the element
 * in the parsed XML; 0 for built models or when unknown. */
int titulo_element_line(const titulo *t, const char *element);
int titulo_firmante_line(const titulo *t, size_t i);

/*
 * titulo_cadena_check - why titulo_cadena() would fail for signer @i.
 * @field: receives the XPath-like name of the first offending field
 *         ("Carrera/@fechaTerminacion", "FirmaResponsable[1]/@curp").
 * Returns 0 (the cadena can be built), FIRMANTE_E_BAD_DOCUMENT (a required
 * field is absent, or @i out of range) or FIRMANTE_E_INVALID (a value holds
 * '|', which the cadena cannot carry, §5.1, §12).
 */
int titulo_cadena_check(const titulo *t, size_t i, char *field, size_t field_size);

/* ==== Findings (diagnostics) ======================================== */

enum titulo_severity {
	TITULO_NOTE = 0,    /* a check that passed and is worth saying (Autenticacion) */
	TITULO_WARNING = 1,
	TITULO_ERROR = 2,
};

/* One thing found wrong (or worth a warning) in an input or a document. */
struct titulo_finding {
	int severity;          /* enum titulo_severity */
	int code;              /* negative firmante error, e.g. FIRMANTE_E_INVALID */
	long firmante;         /* FirmaResponsable index (0-based), -1 if none */
	char curp[19];         /* that FirmaResponsable's curp, "" if none */
	char file[256];        /* input file, "" if none */
	unsigned long row;     /* 1-based CSV row / config or XML line, 0 if none */
	unsigned long column;  /* 1-based CSV column, 0 if none */
	char field[128];       /* "Profesionista/@curp", "fechaExpedicion", ... */
	char message[512];     /* one sentence for a person */
	char rule[40];         /* stable rule code from titulo_rules(), e.g.
				  "curp-check-digit"; "" only for findings of
				  callers outside this library */
};

/* A growing list of findings. Zero-initialize before first use. At most
 * TITULO_MAX_FINDINGS are kept; the counters keep counting past it. */
#define TITULO_MAX_FINDINGS 10000u
struct titulo_findings {
	struct titulo_finding *items;
	size_t count, cap;
	size_t errors, warnings; /* totals, including any not kept */
};

/* titulo_findings_clear - free the list and zero it. NULL is a no-op. */
void titulo_findings_clear(struct titulo_findings *f);

/*
 * titulo_finding_format - one line for a person:
 *   "file:row:column: field: message"  (CSV and config findings), or
 *   "FirmaResponsable[n] (CURP): field: message" (signer findings; n is
 *   1-based as in XPath, while the finding's firmante index is 0-based), or
 *   "field: message"; warnings are prefixed "warning: ".
 * @buf, @size: output, always NUL-terminated (truncated when too small).
 * Returns @buf.
 */
char *titulo_finding_format(const struct titulo_finding *f, char *buf, size_t size);

/* ==== Rules: the table of every check and its stable code ========== */

/* One rule checked by the builder, the configuration reader, the signer
 * checks of `titulos sign` or the verifier. */
struct titulo_rule {
	const char *code;     /* stable, kebab-case: "curp-check-digit" */
	int severity;         /* enum titulo_severity */
	int error;            /* negative firmante error a finding carries */
	const char *where;    /* what is checked: "CSV", "configuration", "XML", "signing" */
	const char *text;     /* the rule in one sentence */
	const char *source;   /* section of titulo-electronico.md, or "project" */
};

/*
 * titulo_rules - the rule table, in documentation order.
 * @n: receives the number of entries.
 * Returns a static array (never NULL). Codes are unique and never reused.
 */
const struct titulo_rule *titulo_rules(size_t *n);

/* titulo_rule_find - the entry with @code, or NULL. */
const struct titulo_rule *titulo_rule_find(const char *code);

/*
 * titulo_rules_markdown - the rule table as a Markdown table (header row,
 * one row per rule; the text docs/titulos.md carries between its
 * "rules:begin" and "rules:end" markers).
 * @out: malloc'd NUL-terminated text, caller frees; @len: its length.
 * Returns 0 or FIRMANTE_E_NOMEM.
 */
int titulo_rules_markdown(char **out, size_t *len);

/*
 * titulo_finding_add - append a finding of rule @code (severity and error
 * from the table) for callers outside the library (e.g. `titulos sign`).
 * @firmante: FirmaResponsable index or -1; @curp, @file, @field may be NULL;
 * @row, @column: 1-based, 0 when none.
 * Returns 0, FIRMANTE_E_NOMEM, FIRMANTE_E_INVALID (unknown rule code).
 */
int titulo_finding_add(struct titulo_findings *f, const char *code, long firmante,
		       const char *curp, const char *file, unsigned long row,
		       unsigned long column, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 9, 10)));

/*
 * titulo_findings_json - the findings as a JSON array of objects
 * {"severity": "error"|"warning", "rule", "file", "row", "column", "field",
 *  "firmante" (index or null), "curp", "message"}, one line, no newline.
 * @out: malloc'd, caller frees. Returns 0 or FIRMANTE_E_NOMEM.
 */
int titulo_findings_json(const struct titulo_findings *f, char **out);

/* ==== Verification (§6, §7, §11) ==================================== */

typedef struct titulo_verifier titulo_verifier;

/*
 * titulo_verifier_new - compile the XSD once for any number of
 * titulo_verify() calls.
 * @xsd_path: the schema, or NULL for the project copy
 *            (fm_data_path("TituloElectronico.xsd")).
 * @out: written on success; free with titulo_verifier_free().
 * @err: may be NULL; filled on failure.
 * Returns 0, FIRMANTE_E_CONFIG (schema not found or not compilable),
 * FIRMANTE_E_NOMEM.
 */
int titulo_verifier_new(const char *xsd_path, titulo_verifier **out, struct titulo_error *err);

/* titulo_verifier_free - NULL is a no-op. */
void titulo_verifier_free(titulo_verifier *v);

/* Flags for titulo_verify(). */
#define TITULO_VERIFY_NO_XSD 0x1u    /* skip XSD validation */
#define TITULO_VERIFY_UNSIGNED 0x2u  /* only structure, XSD off, no sello checks:
					for documents before signing */

/*
 * titulo_verify - check a title document as the DGP would:
 *  1. titulo_parse() (structure, namespace, order: §1, §2);
 *  2. XSD validation against the compiled schema; a document holding an
 *     Autenticacion node with attributes is validated with that node
 *     removed (§11, XSD conflict);
 *  3. for each FirmaResponsable: the cadena can be built (§5); sello is
 *     strict one-line Base64 (§6); certificadoResponsable is one-line Base64
 *     of a DER X.509 certificate with a SAT serial (§7);
 *     noCertificadoResponsable equals the certificate's; curp equals the
 *     certificate's CURP (subject serialNumber); the certificate is an
 *     e.firma (FIEL), not a CSD (§6); the sello verifies as
 *     RSASSA-PKCS1-v1_5 with SHA-256 over the cadena rebuilt from the
 *     parsed document (§6);
 *  4. Autenticacion, when present: selloTitulo equals the sellos
 *     concatenated in document order (§11 a); the authority's sello is
 *     reported as not verifiable (warning), as no authority certificate
 *     store exists yet (§11 b).
 * Certificate validity dates are not checked: the signing time is not in
 * the document.
 * Without TITULO_VERIFY_UNSIGNED, a document where no FirmaResponsable has
 * a sello, certificadoResponsable or noCertificadoResponsable gets one
 * error "titulo-unsigned" (not signed yet) and is then checked as with
 * TITULO_VERIFY_UNSIGNED (so @v may be NULL for it).
 * @v: from titulo_verifier_new(); may be NULL with TITULO_VERIFY_NO_XSD.
 * @xml, @len: the document, not retained.
 * @flags: TITULO_VERIFY_* bits.
 * @findings: every problem found is appended (each names the
 *            FirmaResponsable index and CURP where it applies, the field,
 *            and a sentence).
 * Returns 0 when the document passes (warnings may have been appended),
 * FIRMANTE_E_INVALID when at least one error finding was appended,
 * FIRMANTE_E_NOMEM or FIRMANTE_E_INTERNAL when the check could not run.
 */
int titulo_verify(titulo_verifier *v, const char *xml, size_t len, unsigned flags,
		  struct titulo_findings *findings);

/*
 * titulo_verifier_set_autoridad - the authority's certificate (DGAIR or a
 * state authority) for checking Autenticacion/@selloAutenticacion (§11 b):
 * RSA PKCS#1 v1.5 with SHA-256 over
 * ||version|folioDigital|fechaAutenticacion|selloTitulo|noCertificadoAutoridad||,
 * and noCertificadoAutoridad equal to the certificate's SAT number. Without
 * it, titulo_verify() reports the authority's sello as not verifiable (a
 * warning). titulo_verify() also adds notes (TITULO_NOTE) saying that
 * selloTitulo matches the responsables' sellos and that the authority's
 * sello verifies.
 * @der, @len: the .cer bytes, copied.
 * Returns 0, FIRMANTE_E_BAD_REQUEST (no data), FIRMANTE_E_CERT_INVALID
 * (not one DER X.509 certificate), FIRMANTE_E_NOMEM; @err (may be NULL)
 * gets a sentence.
 */
int titulo_verifier_set_autoridad(titulo_verifier *v, const uint8_t *der, size_t len,
				  struct titulo_error *err);

/* ==== Showing a title (`titulos show`) ============================== */

/*
 * titulo_show_text - a title for a person: folioControl, then each
 * FirmaResponsable and element with its attributes in XSD order (Base64
 * values as their length; empty attributes as "(empty)").
 * @out: malloc'd NUL-terminated text, caller frees.
 * Returns 0, FIRMANTE_E_BAD_REQUEST (NULL argument), FIRMANTE_E_NOMEM.
 */
int titulo_show_text(const titulo *t, char **out);

/*
 * titulo_show_json - the title as one JSON object: the root's attributes,
 * "FirmaResponsables" (an array of attribute objects), then one object
 * per element present ("Institucion", ..., "Autenticacion"), attributes
 * as strings, absent ones left out.
 * @out: malloc'd, caller frees. Returns as titulo_show_text().
 */
int titulo_show_json(const titulo *t, char **out);

/* ==== Catalogs (§4) ================================================= */

typedef struct titulo_catalogos titulo_catalogos;

/*
 * titulo_catalogos_load - read catalogos.csv (columns
 * catalogo,id,descripcion,detalle,nota; UTF-8 without BOM).
 * @path: the file, or NULL for fm_data_path("catalogos.csv").
 * @out: written on success; free with titulo_catalogos_free().
 * @err: may be NULL; filled on failure (line = CSV row).
 * Returns 0, FIRMANTE_E_CONFIG (file not found, malformed, or a duplicate
 * catalogo/id pair), FIRMANTE_E_NOMEM.
 */
int titulo_catalogos_load(const char *path, titulo_catalogos **out, struct titulo_error *err);

/* titulo_catalogos_free - NULL is a no-op. */
void titulo_catalogos_free(titulo_catalogos *c);

/*
 * titulo_catalogo_descripcion - text of @id in @catalogo ("cargo",
 * "modalidadTitulacion", "fundamentoLegalServicioSocial",
 * "entidadFederativa" (ids are 2-digit strings: "09"),
 * "tipoEstudioAntecedente", "autorizacionReconocimiento",
 * "cumplioServicioSocial", "motivoCancelacion"). Ids compare as strings:
 * "9" is not "09", "03" is not "3" (§8, §13.2).
 * Returns a string owned by @c, or NULL when there is no such row.
 */
const char *titulo_catalogo_descripcion(const titulo_catalogos *c, const char *catalogo,
					const char *id);

/* titulo_catalogo_detalle - the `detalle` column of that row ("" when
 * empty), e.g. "ACTA DE EXAMEN" for modalidadTitulacion 1; NULL when there
 * is no such row. */
const char *titulo_catalogo_detalle(const titulo_catalogos *c, const char *catalogo,
				    const char *id);

/* ==== Text and value rules (§8, §9, §12) =========================== */

/*
 * titulo_normalize - the builder's text rule (§12): Unicode NFC
 * (utf8proc), trim leading/trailing white space, collapse internal runs of
 * Unicode White_Space (TAB, CR, LF, NBSP, ...) to one U+0020. Never changes
 * case, accents or Ñ.
 * @in: UTF-8 text.
 * @out: malloc'd result, caller frees. @changed: set to 1 when the result
 *       differs from @in, else 0. Both written on success.
 * Returns 0, FIRMANTE_E_INVALID (not valid UTF-8, a control character XML
 * 1.0 forbids, or '|', which the cadena cannot carry), FIRMANTE_E_NOMEM.
 */
int titulo_normalize(const char *in, char **out, int *changed);

/*
 * titulo_curp_check - a CURP per §9: 18 characters of the field pattern
 * and the check digit (weights 18..2 over
 * "0123456789ABCDEFGHIJKLMNÑOPQRSTUVWXYZ"; 10 − sum mod 10, 10 → 0).
 * Returns 0 or FIRMANTE_E_INVALID (wrong length, pattern or check digit).
 * @why (may be NULL, size @why_size) receives a sentence on failure.
 */
int titulo_curp_check(const char *curp, char *why, size_t why_size);

/*
 * titulo_date_check - @s is a canonical xs:date "YYYY-MM-DD" with a real
 * calendar day (§8). Returns 0 or FIRMANTE_E_INVALID.
 */
int titulo_date_check(const char *s);

/* ==== Institution configuration (INI) ============================== */

/* [carrera <cveCarrera>] */
struct titulo_conf_carrera {
	char *cveCarrera;
	char *nombreCarrera;
	char *idAutorizacionReconocimiento;
	char *numeroRvoe;          /* NULL when the career has none */
	int line;                  /* line of the section header */
};

/* [firmante <name>]: one per FirmaResponsable, in document order. */
struct titulo_conf_firmante {
	char *seccion;             /* the <name> of the section, e.g. "rector" */
	char *nombre;
	char *primerApellido;
	char *segundoApellido;     /* NULL when the signer has none */
	char *curp;
	char *idCargo;             /* cargo text comes from the catalog */
	char *cargo;               /* optional: must equal the catalog text, or NULL */
	char *abrTitulo;           /* NULL when not given */
	char *key;                 /* PKCS#11 URI of the signer's key (RFC 7512) */
	int line;
};

struct titulo_config {
	char *path;
	char *cveInstitucion;
	char *nombreInstitucion;
	char *idEntidadFederativa; /* where titles are issued; 2 digits */
	struct titulo_conf_carrera *carreras;
	size_t ncarreras;
	struct titulo_conf_firmante *firmantes;
	size_t nfirmantes;
};

/*
 * titulo_config_load - read the institution file (INI, libinih; see
 * docs/titulos.md and examples/institucion.conf). Texts are normalized
 * (§12, a warning per change); ids are checked against @cat (cargo,
 * autorizacionReconocimiento, entidadFederativa), cveInstitucion is 6
 * digits, at least one career and one signer are required, signer CURPs
 * are unique and have the §9 form (a wrong check digit is a warning only:
 * it is the certificate's CURP that must match).
 * @cat: loaded catalogs, not retained.
 * @out: written on success; free with titulo_config_free().
 * @findings: problems are appended with file and line.
 * Returns 0, FIRMANTE_E_IO (the file cannot be read: missing, no permission,
 * a directory; the "config-unreadable" finding gives the system's reason),
 * FIRMANTE_E_CONFIG (over 1 MiB, a NUL byte, or any error finding),
 * FIRMANTE_E_NOMEM.
 */
int titulo_config_load(const char *path, const titulo_catalogos *cat,
		       struct titulo_config **out, struct titulo_findings *findings);

/* titulo_config_free - NULL is a no-op. */
void titulo_config_free(struct titulo_config *c);

/* titulo_config_firmante_by_curp - the signer whose curp is @curp, or NULL. */
const struct titulo_conf_firmante *titulo_config_firmante_by_curp(const struct titulo_config *c,
								   const char *curp);

/* ==== Graduates' CSV → unsigned titles ============================= */

/* One batch of built, unsigned titles, in CSV row order. */
struct titulo_lote {
	titulo **titulos;
	char **folios;   /* folioControl of each title */
	size_t count;
	unsigned long *rows;     /* CSV row of each title */
	unsigned long *skipped;  /* CSV rows left out for errors (TITULO_BUILD_SKIP_INVALID) */
	size_t nskipped;
};

/* Options of titulo_build_csv_opts(). */
#define TITULO_BUILD_SKIP_INVALID 0x1u /* build the valid rows, list the others */
struct titulo_build_options {
	unsigned flags;      /* TITULO_BUILD_* */
	const char *today;   /* "YYYY-MM-DD" for the date rules, NULL = local date */
	/* 1 when @folio belongs to a title already recorded (§3: the DGP
	 * rejects a folio registered before), 0 otherwise; may be NULL. */
	int (*folio_registered)(void *ctx, const char *folio);
	void *ctx;
};

/* Cap on rows in one CSV batch. */
#define TITULO_MAX_CSV_ROWS 100000u
/* Cap on the CSV file size, bytes. */
#define TITULO_MAX_CSV_BYTES (64u * 1024u * 1024u)

/*
 * titulo_build_csv - read the graduates' CSV (UTF-8, header row of column
 * names, one title per row; columns in docs/titulos.md) and build one
 * unsigned title per row: institution, career and signers from @conf,
 * catalog texts from @cat by id, texts normalized (§12, a warning per
 * change), an empty optional value left out. Rules checked: dates
 * YYYY-MM-DD and their order (§8), exam date vs modalidad (§10), entity ids
 * 2 digits in the catalog (§3), graduate CURP form and check digit (§9),
 * e-mail form, servicio social vs level (§10, warning), a career known to
 * @conf, folioControl unique in the batch and made of [A-Z0-9-] (at most 40).
 * The FirmaResponsable elements carry no sello, certificadoResponsable or
 * noCertificadoResponsable: those are added when signing.
 * @csv_path: the CSV file (also the "file" of each finding).
 * @out: written only when no row has an error; free with titulo_lote_free().
 * @findings: errors and warnings, each "file:row:column: field: message".
 * Returns 0, FIRMANTE_E_INVALID (at least one error finding),
 * FIRMANTE_E_IO, FIRMANTE_E_TOO_LARGE, FIRMANTE_E_NOMEM.
 */
int titulo_build_csv(const struct titulo_config *conf, const titulo_catalogos *cat,
		     const char *csv_path, struct titulo_lote **out,
		     struct titulo_findings *findings);

/*
 * titulo_build_csv_opts - titulo_build_csv() with options (@opts may be
 * NULL). With TITULO_BUILD_SKIP_INVALID, rows with errors are left out and
 * listed in @out->skipped, and the call returns 0 unless the file itself is
 * unusable (unreadable, malformed, bad header). The CSV may also be
 * Windows-1252 (converted with iconv, a warning), use ';' instead of ','
 * (detected from the header), match header names without regard to case or
 * accents, and give dates as DD/MM/YYYY (written YYYY-MM-DD). Optional
 * columns nombreCarrera, modalidadTitulacion, fundamentoLegalServicioSocial,
 * entidadFederativa, tipoEstudioAntecedente and entidadFederativaAntecedente
 * are compared byte for byte with the configuration or catalog (§4).
 * Every finding carries its rule code (titulo_rules()).
 */
int titulo_build_csv_opts(const struct titulo_config *conf, const titulo_catalogos *cat,
			  const char *csv_path, const struct titulo_build_options *opts,
			  struct titulo_lote **out, struct titulo_findings *findings);

/* titulo_lote_free - NULL is a no-op. */
void titulo_lote_free(struct titulo_lote *l);

/* ---- The same in two readings, in flat memory -------------------------
 * titulo_build_csv_opts() keeps every title of the batch in memory. For a
 * large batch, check first and build afterwards, one title at a time:
 *
 *   titulo_build_check()  reads the CSV once and checks every rule on every
 *                         row (all findings in one pass), keeping only what
 *                         rules across rows need (the folios) and the rows
 *                         left out; nothing is built;
 *   titulo_build_each()   reads it again and hands each title of a valid
 *                         row to a callback (which writes it), freeing it
 *                         afterwards.
 *
 * Memory grows with the number of folios (about 64 bytes per row), not with
 * the titles; the CSV is read in chunks (never whole). The second reading
 * refuses a file whose bytes differ from the first's (SHA-256). */
struct titulo_build;

/*
 * titulo_build_check - the first reading: the rules and findings of
 * titulo_build_csv_opts() (same arguments, same @findings, same return
 * values), without building any title.
 * @out: written only on success (no error, or TITULO_BUILD_SKIP_INVALID);
 * release with titulo_build_free(). @conf, @cat and @opts->ctx must outlive
 * it; @csv_path is copied. @opts->folio_registered is called here only.
 * Returns 0, FIRMANTE_E_INVALID (an error finding and no
 * TITULO_BUILD_SKIP_INVALID, or the file itself unusable), FIRMANTE_E_IO
 * (unreadable; a csv-unreadable finding), FIRMANTE_E_NOMEM.
 */
int titulo_build_check(const struct titulo_config *conf, const titulo_catalogos *cat,
		       const char *csv_path, const struct titulo_build_options *opts,
		       struct titulo_build **out, struct titulo_findings *findings);

/* titulo_build_count - how many titles titulo_build_each() will build. */
size_t titulo_build_count(const struct titulo_build *b);

/* titulo_build_skipped - the CSV rows left out for errors, ascending
 * (TITULO_BUILD_SKIP_INVALID); @n gets their number. Owned by @b. */
const unsigned long *titulo_build_skipped(const struct titulo_build *b, size_t *n);

/* titulo_build_has_folio - 1 when @folio is the folioControl of a row that
 * becomes a title, 0 otherwise. */
int titulo_build_has_folio(const struct titulo_build *b, const char *folio);

/*
 * Called by titulo_build_each() with each title in CSV row order.
 * @folio: its folioControl; @row: its CSV row (1 = header).
 * @t: the title; the callback may take it (set *t to NULL and free it with
 * titulo_free() later), otherwise it is freed after the call.
 * A nonzero return stops the reading; titulo_build_each() returns it.
 */
typedef int (*titulo_build_fn)(void *ctx, const char *folio, unsigned long row, titulo **t);

/*
 * titulo_build_each - the second reading: build each title of a row the
 * first reading found valid and hand it to @fn, one at a time.
 * Returns 0, @fn's nonzero value, FIRMANTE_E_IO (the file cannot be read
 * again, or its bytes are no longer those checked: nothing should be kept
 * of what @fn received), FIRMANTE_E_NOMEM.
 */
int titulo_build_each(struct titulo_build *b, titulo_build_fn fn, void *ctx);

/* titulo_build_free - NULL is a no-op. */
void titulo_build_free(struct titulo_build *b);

#ifdef __cplusplus
}
#endif
#endif

/*
 * Internal pieces of the title room shared between its source files.
 * Not installed; not a contract with other rooms.
 */
#ifndef FIRMANTE_TITULO_INTERNAL_H
#define FIRMANTE_TITULO_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "firmante/titulo.h"

/* Single-occurrence elements, in the order of §2 (FirmaResponsables, which
 * holds the repeated FirmaResponsable, sits between the root and
 * Institucion). */
enum te_elem {
	TE_ROOT = 0,
	TE_INSTITUCION,
	TE_CARRERA,
	TE_PROFESIONISTA,
	TE_EXPEDICION,
	TE_ANTECEDENTE,
	TE_AUTENTICACION,
	TE_NELEM,
	TE_FIRMA = 100 /* FirmaResponsable, in tables only */
};

#define TE_MAX_ATTRS 12
/* Cap on FirmaResponsable elements in one document. */
#define TE_MAX_FIRMANTES 32

struct te_node {
	int present;
	int line;
	char *v[TE_MAX_ATTRS]; /* NULL = absent; index = position in the XSD */
};

struct titulo {
	struct te_node el[TE_NELEM];
	struct te_node *firmas;
	size_t nfirmas;
	char *schema_location; /* xsi:schemaLocation of the root, or NULL */
};

/* Name of an element and its attributes in XSD order. */
const char *te_elem_name(int e);
size_t te_elem_nattrs(int e);
const char *te_elem_attr(int e, size_t i);
/* Index of attribute @name of element @e, or -1. */
int te_attr_index(int e, const char *name);
/* Element id of a single-occurrence element name, or -1. */
int te_elem_by_name(const char *name);

/* A growable byte buffer; err sticks after the first failed append. */
struct te_buf {
	char *p;
	size_t len, cap;
	int err;
};
void te_buf_add(struct te_buf *b, const char *s, size_t n);
void te_buf_adds(struct te_buf *b, const char *s);
void te_buf_addf(struct te_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Hand the NUL-terminated content to the caller; 0 or FIRMANTE_E_NOMEM. */
int te_buf_take(struct te_buf *b, char **out, size_t *len);
void te_buf_free(struct te_buf *b);

/* Fill @err (may be NULL). */
void te_error(struct titulo_error *err, int code, int line, const char *field,
	      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Nonzero when @s is valid UTF-8 holding only characters XML 1.0 allows. */
int te_text_ok(const char *s);

struct titulo_findings;
/* Append a finding; file/field/curp may be NULL. Returns 0 or
 * FIRMANTE_E_NOMEM. Past TITULO_MAX_FINDINGS only the counters move. */
int te_finding_add(struct titulo_findings *f, int severity, int code, long firmante,
		   const char *curp, const char *file, unsigned long row, unsigned long column,
		   const char *field, const char *fmt, ...)
	__attribute__((format(printf, 10, 11)));

/* Append a finding of rule @code (severity and error from the rule
 * table). Returns 0, FIRMANTE_E_NOMEM, FIRMANTE_E_INVALID (unknown code). */
int te_finding_r(struct titulo_findings *f, const char *code, long firmante, const char *curp,
		 const char *file, unsigned long row, unsigned long column, const char *field,
		 const char *fmt, ...) __attribute__((format(printf, 9, 10)));
int te_finding_rv(struct titulo_findings *f, const char *code, long firmante, const char *curp,
		  const char *file, unsigned long row, unsigned long column, const char *field,
		  const char *fmt, va_list ap) __attribute__((format(printf, 9, 0)));

/* CURP check with the kind of failure: 0 ok, 1 length, 2 structure,
 * 3 check digit; @why as for titulo_curp_check(). */
int te_curp_check(const char *s, char *why, size_t why_size);

/* A date as registrars type it, YYYY-MM-DD or DD/MM/YYYY (day and month of
 * one or two digits), checked as a calendar day (§8) and written to @out
 * as YYYY-MM-DD. Returns 0 or FIRMANTE_E_INVALID. */
int te_date_input(const char *in, char out[11]);

/* titulo_parse() that also hands back the parsed libxml2 document (an
 * xmlDocPtr, passed as void * so this header needs no libxml2), for a
 * caller that validates it against the XSD instead of parsing the text a
 * second time. *@doc is written only on success; free it with xmlFreeDoc().
 * Same returns as titulo_parse(). */
int te_parse_doc(const char *xml, size_t len, titulo **out, struct titulo_error *err,
		 void **doc);

#endif

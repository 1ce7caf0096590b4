/* Findings: the list of problems a check reports to the caller. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "titulo-internal.h"

int te_finding_add(struct titulo_findings *f, int severity, int code, long firmante,
		   const char *curp, const char *file, unsigned long row, unsigned long column,
		   const char *field, const char *fmt, ...)
{
	if (!f)
		return 0;
	if (severity == TITULO_ERROR)
		f->errors++;
	else if (severity == TITULO_WARNING)
		f->warnings++;
	if (f->count >= TITULO_MAX_FINDINGS)
		return 0;
	if (f->count == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		if (cap > TITULO_MAX_FINDINGS)
			cap = TITULO_MAX_FINDINGS;
		struct titulo_finding *items = realloc(f->items, cap * sizeof(*items));
		if (!items)
			return FIRMANTE_E_NOMEM;
		f->items = items;
		f->cap = cap;
	}
	struct titulo_finding *x = &f->items[f->count];
	memset(x, 0, sizeof(*x));
	x->severity = severity;
	x->code = code;
	x->firmante = firmante;
	snprintf(x->curp, sizeof(x->curp), "%s", curp ? curp : "");
	snprintf(x->file, sizeof(x->file), "%s", file ? file : "");
	x->row = row;
	x->column = column;
	snprintf(x->field, sizeof(x->field), "%s", field ? field : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->message, sizeof(x->message), fmt, ap);
	va_end(ap);
	f->count++;
	return 0;
}

void titulo_findings_clear(struct titulo_findings *f)
{
	if (!f)
		return;
	free(f->items);
	memset(f, 0, sizeof(*f));
}

char *titulo_finding_format(const struct titulo_finding *f, char *buf, size_t size)
{
	if (!buf || !size)
		return buf;
	const char *w = f->severity == TITULO_WARNING ? "warning: "
			: f->severity == TITULO_NOTE  ? "note: "
						      : "";
	char where[400] = "";
	if (f->file[0] && f->column)
		snprintf(where, sizeof(where), "%s:%lu:%lu: ", f->file, f->row, f->column);
	else if (f->file[0] && f->row)
		snprintf(where, sizeof(where), "%s:%lu: ", f->file, f->row);
	else if (f->file[0])
		snprintf(where, sizeof(where), "%s: ", f->file);
	if (f->firmante >= 0)
		snprintf(buf, size, "%s%sFirmaResponsable[%ld] (%s): %s: %s", where, w, f->firmante + 1,
			 f->curp[0] ? f->curp : "no curp", f->field, f->message);
	else if (f->field[0])
		snprintf(buf, size, "%s%s%s: %s", where, w, f->field, f->message);
	else
		snprintf(buf, size, "%s%s%s", where, w, f->message);
	return buf;
}

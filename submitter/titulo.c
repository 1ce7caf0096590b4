/*
 * Título Electrónico v1.0: document model, XML parsing and serialization,
 * cadena original (spec/titulo-electronico.md §1, §2, §3, §5).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "firmante/util.h"
#include "titulo-internal.h"

#define XSI_NS "http://www.w3.org/2001/XMLSchema-instance"

/* Attributes of each element in the order the XSD declares them (§3). */
static const char *const attrs_root[] = { "version", "folioControl" };
static const char *const attrs_firma[] = {
	"nombre", "primerApellido", "segundoApellido", "curp", "idCargo", "cargo",
	"abrTitulo", "sello", "certificadoResponsable", "noCertificadoResponsable"
};
static const char *const attrs_institucion[] = { "cveInstitucion", "nombreInstitucion" };
static const char *const attrs_carrera[] = {
	"cveCarrera", "nombreCarrera", "fechaInicio", "fechaTerminacion",
	"idAutorizacionReconocimiento", "autorizacionReconocimiento", "numeroRvoe"
};
static const char *const attrs_profesionista[] = {
	"curp", "nombre", "primerApellido", "segundoApellido", "correoElectronico"
};
static const char *const attrs_expedicion[] = {
	"fechaExpedicion", "idModalidadTitulacion", "modalidadTitulacion",
	"fechaExamenProfesional", "fechaExencionExamenProfesional", "cumplioServicioSocial",
	"idFundamentoLegalServicioSocial", "fundamentoLegalServicioSocial",
	"idEntidadFederativa", "entidadFederativa"
};
static const char *const attrs_antecedente[] = {
	"institucionProcedencia", "idTipoEstudioAntecedente", "tipoEstudioAntecedente",
	"idEntidadFederativa", "entidadFederativa", "fechaInicio", "fechaTerminacion",
	"noCedula"
};
/* §11: the authority's node; the XSD declares no attributes for it. */
static const char *const attrs_autenticacion[] = {
	"version", "folioDigital", "fechaAutenticacion", "selloTitulo",
	"noCertificadoAutoridad", "selloAutenticacion"
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct elem_def {
	const char *name;
	const char *const *attrs;
	size_t nattrs;
};

static const struct elem_def elem_defs[TE_NELEM] = {
	[TE_ROOT] = { "TituloElectronico", attrs_root, N(attrs_root) },
	[TE_INSTITUCION] = { "Institucion", attrs_institucion, N(attrs_institucion) },
	[TE_CARRERA] = { "Carrera", attrs_carrera, N(attrs_carrera) },
	[TE_PROFESIONISTA] = { "Profesionista", attrs_profesionista, N(attrs_profesionista) },
	[TE_EXPEDICION] = { "Expedicion", attrs_expedicion, N(attrs_expedicion) },
	[TE_ANTECEDENTE] = { "Antecedente", attrs_antecedente, N(attrs_antecedente) },
	[TE_AUTENTICACION] = { "Autenticacion", attrs_autenticacion, N(attrs_autenticacion) },
};
static const struct elem_def firma_def = { "FirmaResponsable", attrs_firma, N(attrs_firma) };

static const struct elem_def *def_of(int e)
{
	if (e == TE_FIRMA)
		return &firma_def;
	if (e >= 0 && e < TE_NELEM)
		return &elem_defs[e];
	return NULL;
}

const char *te_elem_name(int e)
{
	const struct elem_def *d = def_of(e);
	return d ? d->name : "";
}

size_t te_elem_nattrs(int e)
{
	const struct elem_def *d = def_of(e);
	return d ? d->nattrs : 0;
}

const char *te_elem_attr(int e, size_t i)
{
	const struct elem_def *d = def_of(e);
	return (d && i < d->nattrs) ? d->attrs[i] : NULL;
}

int te_attr_index(int e, const char *name)
{
	const struct elem_def *d = def_of(e);
	if (!d || !name)
		return -1;
	for (size_t i = 0; i < d->nattrs; i++)
		if (strcmp(d->attrs[i], name) == 0)
			return (int)i;
	return -1;
}

int te_elem_by_name(const char *name)
{
	if (!name)
		return -1;
	for (int e = 0; e < TE_NELEM; e++)
		if (strcmp(elem_defs[e].name, name) == 0)
			return e;
	return -1;
}

/* The 38 fields of the cadena original, in order (§5.2). */
struct cadena_field {
	int elem;
	const char *attr;
	int optional;
};

static const struct cadena_field cadena_fields[TITULO_CADENA_FIELDS] = {
	{ TE_ROOT, "version", 0 },
	{ TE_ROOT, "folioControl", 0 },
	{ TE_FIRMA, "curp", 0 },
	{ TE_FIRMA, "idCargo", 0 },
	{ TE_FIRMA, "cargo", 0 },
	{ TE_FIRMA, "abrTitulo", 1 },
	{ TE_INSTITUCION, "cveInstitucion", 0 },
	{ TE_INSTITUCION, "nombreInstitucion", 0 },
	{ TE_CARRERA, "cveCarrera", 0 },
	{ TE_CARRERA, "nombreCarrera", 0 },
	{ TE_CARRERA, "fechaInicio", 1 },
	{ TE_CARRERA, "fechaTerminacion", 0 },
	{ TE_CARRERA, "idAutorizacionReconocimiento", 0 },
	{ TE_CARRERA, "autorizacionReconocimiento", 0 },
	{ TE_CARRERA, "numeroRvoe", 1 },
	{ TE_PROFESIONISTA, "curp", 0 },
	{ TE_PROFESIONISTA, "nombre", 0 },
	{ TE_PROFESIONISTA, "primerApellido", 0 },
	{ TE_PROFESIONISTA, "segundoApellido", 1 },
	{ TE_PROFESIONISTA, "correoElectronico", 0 },
	{ TE_EXPEDICION, "fechaExpedicion", 0 },
	{ TE_EXPEDICION, "idModalidadTitulacion", 0 },
	{ TE_EXPEDICION, "modalidadTitulacion", 0 },
	{ TE_EXPEDICION, "fechaExamenProfesional", 1 },
	{ TE_EXPEDICION, "fechaExencionExamenProfesional", 1 },
	{ TE_EXPEDICION, "cumplioServicioSocial", 0 },
	{ TE_EXPEDICION, "idFundamentoLegalServicioSocial", 0 },
	{ TE_EXPEDICION, "fundamentoLegalServicioSocial", 0 },
	{ TE_EXPEDICION, "idEntidadFederativa", 0 },
	{ TE_EXPEDICION, "entidadFederativa", 0 },
	{ TE_ANTECEDENTE, "institucionProcedencia", 0 },
	{ TE_ANTECEDENTE, "idTipoEstudioAntecedente", 0 },
	{ TE_ANTECEDENTE, "tipoEstudioAntecedente", 0 },
	{ TE_ANTECEDENTE, "idEntidadFederativa", 0 },
	{ TE_ANTECEDENTE, "entidadFederativa", 1 },
	{ TE_ANTECEDENTE, "fechaInicio", 1 },
	{ TE_ANTECEDENTE, "fechaTerminacion", 0 },
	{ TE_ANTECEDENTE, "noCedula", 1 },
};

/* ---- small helpers ---------------------------------------------------- */

void te_buf_add(struct te_buf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1) {
			if (cap > ((size_t)-1) / 2) {
				b->err = FIRMANTE_E_NOMEM;
				return;
			}
			cap *= 2;
		}
		char *p = realloc(b->p, cap);
		if (!p) {
			b->err = FIRMANTE_E_NOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void te_buf_adds(struct te_buf *b, const char *s)
{
	te_buf_add(b, s, strlen(s));
}

void te_buf_addf(struct te_buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = FIRMANTE_E_INTERNAL;
		return;
	}
	te_buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

int te_buf_take(struct te_buf *b, char **out, size_t *len)
{
	if (!b->err && !b->p)
		te_buf_add(b, "", 0);
	if (b->err) {
		int rc = b->err;
		te_buf_free(b);
		return rc;
	}
	*out = b->p;
	if (len)
		*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	return 0;
}

void te_buf_free(struct te_buf *b)
{
	if (!b)
		return;
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void te_error(struct titulo_error *err, int code, int line, const char *field,
	      const char *fmt, ...)
{
	if (!err)
		return;
	err->code = code;
	err->line = line;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

/* Decode one UTF-8 sequence; returns its length or 0 when malformed. */
static size_t utf8_decode(const unsigned char *s, unsigned long *cp)
{
	unsigned long c;
	size_t n;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xE0) == 0xC0) {
		c = s[0] & 0x1F;
		n = 2;
	} else if ((s[0] & 0xF0) == 0xE0) {
		c = s[0] & 0x0F;
		n = 3;
	} else if ((s[0] & 0xF8) == 0xF0) {
		c = s[0] & 0x07;
		n = 4;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
	    c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return n;
}

int te_text_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned long c;
		size_t n = utf8_decode(p, &c);
		if (!n)
			return 0;
		if ((c < 0x20 && c != 0x09 && c != 0x0A && c != 0x0D) || c == 0xFFFE ||
		    c == 0xFFFF)
			return 0;
		p += n;
	}
	return 1;
}

static char *dupstr(const char *s)
{
	size_t n = strlen(s);
	char *d = malloc(n + 1);
	if (d)
		memcpy(d, s, n + 1);
	return d;
}

static void node_clear(struct te_node *n)
{
	for (size_t i = 0; i < TE_MAX_ATTRS; i++) {
		free(n->v[i]);
		n->v[i] = NULL;
	}
	n->present = 0;
}

void titulo_free(titulo *t)
{
	if (!t)
		return;
	for (int e = 0; e < TE_NELEM; e++)
		node_clear(&t->el[e]);
	for (size_t i = 0; i < t->nfirmas; i++)
		node_clear(&t->firmas[i]);
	free(t->firmas);
	free(t->schema_location);
	free(t);
}

/* ---- accessors ---------------------------------------------------------- */

size_t titulo_firmantes_count(const titulo *t)
{
	return t ? t->nfirmas : 0;
}

const char *titulo_firmante_attr(const titulo *t, size_t i, const char *name)
{
	if (!t || i >= t->nfirmas)
		return NULL;
	int a = te_attr_index(TE_FIRMA, name);
	return a < 0 ? NULL : t->firmas[i].v[a];
}

const char *titulo_attr(const titulo *t, const char *element, const char *name)
{
	if (!t)
		return NULL;
	int e = te_elem_by_name(element);
	if (e < 0 || !t->el[e].present)
		return NULL;
	int a = te_attr_index(e, name);
	return a < 0 ? NULL : t->el[e].v[a];
}

int titulo_element_present(const titulo *t, const char *element)
{
	int e = te_elem_by_name(element);
	return (t && e >= 0) ? t->el[e].present : 0;
}

int titulo_element_line(const titulo *t, const char *element)
{
	int e = te_elem_by_name(element);
	return (t && e >= 0) ? t->el[e].line : 0;
}

int titulo_firmante_line(const titulo *t, size_t i)
{
	return (t && i < t->nfirmas) ? t->firmas[i].line : 0;
}

/* ---- building ------------------------------------------------------------ */

int titulo_new(titulo **out)
{
	titulo *t = calloc(1, sizeof(*t));
	if (!t)
		return FIRMANTE_E_NOMEM;
	for (int e = 0; e < TE_AUTENTICACION; e++)
		t->el[e].present = 1;
	t->el[TE_ROOT].v[0] = dupstr(TITULO_VERSION);
	if (!t->el[TE_ROOT].v[0]) {
		titulo_free(t);
		return FIRMANTE_E_NOMEM;
	}
	*out = t;
	return 0;
}

static int node_set(struct te_node *n, int e, const char *name, const char *value)
{
	int a = te_attr_index(e, name);
	if (a < 0)
		return FIRMANTE_E_BAD_REQUEST;
	char *copy = NULL;
	if (value && value[0]) {
		if (!te_text_ok(value))
			return FIRMANTE_E_INVALID;
		copy = dupstr(value);
		if (!copy)
			return FIRMANTE_E_NOMEM;
	}
	free(n->v[a]);
	n->v[a] = copy;
	return 0;
}

int titulo_set_attr(titulo *t, const char *element, const char *name, const char *value)
{
	int e = te_elem_by_name(element);
	if (!t || e < 0 || e == TE_AUTENTICACION)
		return FIRMANTE_E_BAD_REQUEST;
	return node_set(&t->el[e], e, name, value);
}

int titulo_firmante_add(titulo *t, size_t *index)
{
	if (!t)
		return FIRMANTE_E_BAD_REQUEST;
	if (t->nfirmas >= TE_MAX_FIRMANTES)
		return FIRMANTE_E_TOO_LARGE;
	struct te_node *f = realloc(t->firmas, (t->nfirmas + 1) * sizeof(*f));
	if (!f)
		return FIRMANTE_E_NOMEM;
	t->firmas = f;
	memset(&f[t->nfirmas], 0, sizeof(*f));
	f[t->nfirmas].present = 1;
	if (index)
		*index = t->nfirmas;
	t->nfirmas++;
	return 0;
}

int titulo_firmante_set_attr(titulo *t, size_t i, const char *name, const char *value)
{
	if (!t || i >= t->nfirmas)
		return FIRMANTE_E_BAD_REQUEST;
	return node_set(&t->firmas[i], TE_FIRMA, name, value);
}

/* Strict one-line Base64 (RFC 4648 §4), as fm_base64_decode checks it. */
static int base64_ok(const char *s)
{
	uint8_t *bin = NULL;
	size_t blen = 0;
	if (!s || !s[0])
		return 0;
	if (fm_base64_decode(s, strlen(s), &bin, &blen) != 0)
		return 0;
	free(bin);
	return blen > 0;
}

static int digits20(const char *s)
{
	if (!s || strlen(s) != 20)
		return 0;
	for (size_t i = 0; i < 20; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

int titulo_set_firma(titulo *t, size_t i, const char *sello, const char *certificado,
		     const char *no_certificado)
{
	int rc;
	char *s = NULL, *c = NULL, *n = NULL;
	if (!t || i >= t->nfirmas || !base64_ok(sello) || !base64_ok(certificado) ||
	    !digits20(no_certificado))
		return FIRMANTE_E_BAD_REQUEST;
	s = dupstr(sello);
	c = dupstr(certificado);
	n = dupstr(no_certificado);
	if (!s || !c || !n) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	struct te_node *f = &t->firmas[i];
	int is = te_attr_index(TE_FIRMA, "sello");
	int ic = te_attr_index(TE_FIRMA, "certificadoResponsable");
	int in = te_attr_index(TE_FIRMA, "noCertificadoResponsable");
	free(f->v[is]);
	free(f->v[ic]);
	free(f->v[in]);
	f->v[is] = s;
	f->v[ic] = c;
	f->v[in] = n;
	s = c = n = NULL;
	rc = 0;
out:
	free(s);
	free(c);
	free(n);
	return rc;
}

/* ---- cadena original (§5) ----------------------------------------------- */

int titulo_cadena(const titulo *t, size_t i, char **out, size_t *len)
{
	struct te_buf b = { 0 };
	if (!t || i >= t->nfirmas)
		return FIRMANTE_E_BAD_DOCUMENT;
	te_buf_add(&b, "||", 2);
	for (size_t k = 0; k < TITULO_CADENA_FIELDS; k++) {
		const struct cadena_field *f = &cadena_fields[k];
		const struct te_node *n = f->elem == TE_FIRMA ? &t->firmas[i] : &t->el[f->elem];
		int a = te_attr_index(f->elem, f->attr);
		const char *v = n->present ? n->v[a] : NULL;
		if (!v && !f->optional) {
			te_buf_free(&b);
			return FIRMANTE_E_BAD_DOCUMENT;
		}
		if (v && strchr(v, '|')) {
			te_buf_free(&b);
			return FIRMANTE_E_BAD_DOCUMENT;
		}
		if (k)
			te_buf_add(&b, "|", 1);
		if (v)
			te_buf_adds(&b, v);
	}
	te_buf_add(&b, "||", 2);
	return te_buf_take(&b, out, len);
}

int titulo_cadena_check(const titulo *t, size_t i, char *field, size_t field_size)
{
	if (!t || i >= t->nfirmas) {
		snprintf(field, field_size, "FirmaResponsable[%zu]", i + 1);
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	for (size_t k = 0; k < TITULO_CADENA_FIELDS; k++) {
		const struct cadena_field *f = &cadena_fields[k];
		const struct te_node *n = f->elem == TE_FIRMA ? &t->firmas[i] : &t->el[f->elem];
		int a = te_attr_index(f->elem, f->attr);
		const char *v = n->present ? n->v[a] : NULL;
		if ((!v && !f->optional) || (v && strchr(v, '|'))) {
			if (f->elem == TE_FIRMA)
				snprintf(field, field_size, "FirmaResponsable[%zu]/@%s", i + 1, f->attr);
			else
				snprintf(field, field_size, "%s/@%s", te_elem_name(f->elem), f->attr);
			return v ? FIRMANTE_E_INVALID : FIRMANTE_E_BAD_DOCUMENT;
		}
	}
	return 0;
}

/* ---- parsing (§1, §2) ------------------------------------------------- */

struct parse_ctx {
	xmlDocPtr doc;
	titulo *t;
	struct titulo_error *err;
};

static int is_blank_text(const xmlChar *s)
{
	if (!s)
		return 1;
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			return 0;
	return 1;
}

/* Check name and namespace of an element node against @want. */
static int check_element(struct parse_ctx *c, xmlNodePtr n, const char *want)
{
	int line = (int)xmlGetLineNo(n);
	const char *name = (const char *)n->name;
	if (strcmp(name, want) != 0) {
		if (strcasecmp(name, want) == 0)
			te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, line, name,
				 "element '%s' is wrongly written: the standard names it '%s' "
				 "(element names are case-sensitive)",
				 name, want);
		else
			te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, line, name,
				 "element '%s' found where the standard requires '%s'", name, want);
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	if (!n->ns || !n->ns->href) {
		te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, line, want,
			 "element '%s' has no namespace; it must be in %s", want, TITULO_NS);
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	if (strcmp((const char *)n->ns->href, TITULO_NS) != 0) {
		te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, line, want,
			 "element '%s' is in namespace '%.200s'; it must be in %s", want,
			 (const char *)n->ns->href, TITULO_NS);
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	return 0;
}

/* Content of an element: only white space, comments and processing
 * instructions besides child elements. */
static int check_nontext(struct parse_ctx *c, xmlNodePtr child, const char *parent)
{
	if (child->type == XML_TEXT_NODE && is_blank_text(child->content))
		return 0;
	if (child->type == XML_COMMENT_NODE || child->type == XML_PI_NODE)
		return 0;
	te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, (int)xmlGetLineNo(child), parent,
		 "element '%s' holds text; the standard carries all data in attributes",
		 parent);
	return FIRMANTE_E_BAD_DOCUMENT;
}

static int read_attrs(struct parse_ctx *c, xmlNodePtr n, int e, struct te_node *dst,
		      const char *label)
{
	int line = (int)xmlGetLineNo(n);
	dst->present = 1;
	dst->line = line;
	for (xmlAttrPtr a = n->properties; a; a = a->next) {
		const char *name = (const char *)a->name;
		char field[160]; /* written only for an error */
		if (a->ns) {
			if (e == TE_ROOT && a->ns->href &&
			    strcmp((const char *)a->ns->href, XSI_NS) == 0 &&
			    strcmp(name, "schemaLocation") == 0) {
				xmlChar *v = xmlNodeGetContent((xmlNodePtr)a);
				if (!v)
					return FIRMANTE_E_NOMEM;
				free(c->t->schema_location);
				c->t->schema_location = dupstr((const char *)v);
				xmlFree(v);
				if (!c->t->schema_location)
					return FIRMANTE_E_NOMEM;
				continue;
			}
			snprintf(field, sizeof(field), "%s/@%s", label, name);
			te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, line, field,
				 "attribute '%s' in a namespace is not allowed on %s; the "
				 "standard's attributes are unqualified",
				 name, label);
			return FIRMANTE_E_BAD_DOCUMENT;
		}
		int idx = te_attr_index(e, name);
		if (idx < 0) {
			snprintf(field, sizeof(field), "%s/@%s", label, name);
			for (size_t k = 0; k < te_elem_nattrs(e); k++) {
				if (strcasecmp(te_elem_attr(e, k), name) == 0) {
					te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, line, field,
						 "attribute '%s' of %s is wrongly written: the "
						 "standard names it '%s' (names are case-sensitive)",
						 name, label, te_elem_attr(e, k));
					return FIRMANTE_E_BAD_DOCUMENT;
				}
			}
			te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, line, field,
				 "attribute '%s' is not defined for %s by the standard", name, label);
			return FIRMANTE_E_BAD_DOCUMENT;
		}
		free(dst->v[idx]);
		if (!a->children || (a->children->type == XML_TEXT_NODE && !a->children->next)) {
			/* the usual value: one text node, read in place */
			dst->v[idx] = dupstr(a->children && a->children->content
						     ? (const char *)a->children->content
						     : "");
		} else {
			xmlChar *v = xmlNodeGetContent((xmlNodePtr)a);
			dst->v[idx] = dupstr(v ? (const char *)v : "");
			xmlFree(v);
		}
		if (!dst->v[idx])
			return FIRMANTE_E_NOMEM;
	}
	return 0;
}

static int parse_firmas(struct parse_ctx *c, xmlNodePtr frs)
{
	int rc;
	for (xmlNodePtr k = frs->children; k; k = k->next) {
		if (k->type != XML_ELEMENT_NODE) {
			rc = check_nontext(c, k, "FirmaResponsables");
			if (rc)
				return rc;
			continue;
		}
		rc = check_element(c, k, "FirmaResponsable");
		if (rc)
			return rc;
		size_t idx;
		rc = titulo_firmante_add(c->t, &idx);
		if (rc == FIRMANTE_E_TOO_LARGE) {
			te_error(c->err, rc, (int)xmlGetLineNo(k), "FirmaResponsable",
				 "more than %d FirmaResponsable elements", TE_MAX_FIRMANTES);
			return FIRMANTE_E_BAD_DOCUMENT;
		}
		if (rc)
			return rc;
		char label[64];
		snprintf(label, sizeof(label), "FirmaResponsable[%zu]", idx + 1);
		rc = read_attrs(c, k, TE_FIRMA, &c->t->firmas[idx], label);
		if (rc)
			return rc;
		for (xmlNodePtr g = k->children; g; g = g->next) {
			if (g->type == XML_ELEMENT_NODE) {
				te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, (int)xmlGetLineNo(g), label,
					 "FirmaResponsable has a child element '%s'; it must be empty",
					 (const char *)g->name);
				return FIRMANTE_E_BAD_DOCUMENT;
			}
			rc = check_nontext(c, g, "FirmaResponsable");
			if (rc)
				return rc;
		}
	}
	if (c->t->nfirmas == 0) {
		te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, (int)xmlGetLineNo(frs),
			 "FirmaResponsables",
			 "FirmaResponsables has no FirmaResponsable; at least one is required");
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	return 0;
}

static int parse_tree(struct parse_ctx *c, xmlNodePtr root)
{
	static const char *const order[] = { "FirmaResponsables", "Institucion", "Carrera",
					     "Profesionista", "Expedicion", "Antecedente",
					     "Autenticacion" };
	int rc = check_element(c, root, "TituloElectronico");
	if (rc)
		return rc;
	rc = read_attrs(c, root, TE_ROOT, &c->t->el[TE_ROOT], "TituloElectronico");
	if (rc)
		return rc;
	size_t pos = 0;
	for (xmlNodePtr k = root->children; k; k = k->next) {
		if (k->type != XML_ELEMENT_NODE) {
			rc = check_nontext(c, k, "TituloElectronico");
			if (rc)
				return rc;
			continue;
		}
		if (pos >= N(order)) {
			te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, (int)xmlGetLineNo(k),
				 (const char *)k->name,
				 "element '%s' after the last element the standard allows",
				 (const char *)k->name);
			return FIRMANTE_E_BAD_DOCUMENT;
		}
		rc = check_element(c, k, order[pos]);
		if (rc)
			return rc;
		if (pos == 0) {
			rc = parse_firmas(c, k);
		} else {
			int e = te_elem_by_name(order[pos]);
			rc = read_attrs(c, k, e, &c->t->el[e], order[pos]);
			for (xmlNodePtr g = k->children; !rc && g; g = g->next) {
				if (g->type == XML_ELEMENT_NODE) {
					te_error(c->err, FIRMANTE_E_BAD_DOCUMENT,
						 (int)xmlGetLineNo(g), order[pos],
						 "element '%s' has a child element '%s'; it must be "
						 "empty",
						 order[pos], (const char *)g->name);
					rc = FIRMANTE_E_BAD_DOCUMENT;
				} else {
					rc = check_nontext(c, g, order[pos]);
				}
			}
		}
		if (rc)
			return rc;
		pos++;
	}
	if (pos < N(order) - 1) {
		te_error(c->err, FIRMANTE_E_BAD_DOCUMENT, (int)xmlGetLineNo(root), order[pos],
			 "element '%s' is missing", order[pos]);
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	return 0;
}

int titulo_parse(const char *xml, size_t len, titulo **out, struct titulo_error *err)
{
	return te_parse_doc(xml, len, out, err, NULL);
}

int te_parse_doc(const char *xml, size_t len, titulo **out, struct titulo_error *err,
		 void **doc)
{
	int rc;
	xmlParserCtxtPtr ctxt = NULL;
	struct parse_ctx c = { .err = err };

	if (!xml || !out) {
		te_error(err, FIRMANTE_E_BAD_DOCUMENT, 0, "", "no document");
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	if (len > FIRMANTE_MAX_DOCUMENT) {
		te_error(err, FIRMANTE_E_TOO_LARGE, 0, "",
			 "document of %zu bytes is larger than the limit of %u bytes", len,
			 FIRMANTE_MAX_DOCUMENT);
		return FIRMANTE_E_TOO_LARGE;
	}
	/* A document type declaration is refused before parsing, so that no
	 * internal subset (entity declarations) is ever processed. */
	if (memmem(xml, len, "<!DOCTYPE", 9) != NULL) {
		te_error(err, FIRMANTE_E_BAD_DOCUMENT, 0, "",
			 "the document has a DOCTYPE declaration, which is not allowed");
		return FIRMANTE_E_BAD_DOCUMENT;
	}
	xmlInitParser();
	ctxt = xmlNewParserCtxt();
	if (!ctxt) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	c.doc = xmlCtxtReadMemory(ctxt, xml, (int)len, NULL, NULL,
				  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!c.doc || !ctxt->wellFormed) {
		const xmlError *xe = xmlCtxtGetLastError(ctxt);
		char msg[400];
		snprintf(msg, sizeof(msg), "%s", (xe && xe->message) ? xe->message : "unknown");
		size_t ml = strlen(msg);
		while (ml && (msg[ml - 1] == '\n' || msg[ml - 1] == ' '))
			msg[--ml] = '\0';
		te_error(err, FIRMANTE_E_BAD_DOCUMENT, xe ? xe->line : 0, "",
			 "not well-formed XML: %s", msg);
		rc = FIRMANTE_E_BAD_DOCUMENT;
		goto out;
	}
	if (c.doc->intSubset || c.doc->extSubset) {
		te_error(err, FIRMANTE_E_BAD_DOCUMENT, 0, "",
			 "the document has a DOCTYPE declaration, which is not allowed");
		rc = FIRMANTE_E_BAD_DOCUMENT;
		goto out;
	}
	xmlNodePtr root = xmlDocGetRootElement(c.doc);
	if (!root) {
		te_error(err, FIRMANTE_E_BAD_DOCUMENT, 0, "", "the document has no root element");
		rc = FIRMANTE_E_BAD_DOCUMENT;
		goto out;
	}
	c.t = calloc(1, sizeof(*c.t));
	if (!c.t) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	rc = parse_tree(&c, root);
	if (rc)
		goto out;
	*out = c.t;
	c.t = NULL;
	if (doc) {
		*doc = c.doc;
		c.doc = NULL;
	}
	rc = 0;
out:
	titulo_free(c.t);
	if (c.doc)
		xmlFreeDoc(c.doc);
	if (ctxt)
		xmlFreeParserCtxt(ctxt);
	if (rc == FIRMANTE_E_NOMEM)
		te_error(err, rc, 0, "", "out of memory");
	return rc;
}

/* ---- serialization (§1 output rule) --------------------------------- */

/* Attribute value escaping for a double-quoted attribute (XML 1.0 §2.3,
 * §3.3.3): markup characters as entities, TAB/LF/CR as character
 * references so a parser returns them unchanged. */
static void add_escaped(struct te_buf *b, const char *s)
{
	const char *run = s;
	for (; *s; s++) {
		const char *rep = NULL;
		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\t': rep = "&#9;"; break;
		case '\n': rep = "&#10;"; break;
		case '\r': rep = "&#13;"; break;
		default: break;
		}
		if (rep) {
			te_buf_add(b, run, (size_t)(s - run));
			te_buf_adds(b, rep);
			run = s + 1;
		}
	}
	te_buf_add(b, run, (size_t)(s - run));
}

static int add_attrs(struct te_buf *b, const struct te_node *n, int e)
{
	for (size_t i = 0; i < te_elem_nattrs(e); i++) {
		const char *v = n->v[i];
		if (!v || !v[0])
			continue; /* never an empty attribute */
		if (!te_text_ok(v))
			return FIRMANTE_E_INTERNAL;
		te_buf_add(b, " ", 1);
		te_buf_adds(b, te_elem_attr(e, i));
		te_buf_add(b, "=\"", 2);
		add_escaped(b, v);
		te_buf_add(b, "\"", 1);
	}
	return 0;
}

int titulo_serialize(const titulo *t, char **out, size_t *len)
{
	struct te_buf b = { 0 };
	int rc;
	if (!t || !out) {
		rc = FIRMANTE_E_INTERNAL;
		goto out;
	}
	te_buf_adds(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	te_buf_adds(&b, "<TituloElectronico xmlns=\"" TITULO_NS "\"");
	if (t->schema_location && t->schema_location[0]) {
		if (!te_text_ok(t->schema_location)) {
			rc = FIRMANTE_E_INTERNAL;
			goto out;
		}
		te_buf_adds(&b, " xmlns:xsi=\"" XSI_NS "\" xsi:schemaLocation=\"");
		add_escaped(&b, t->schema_location);
		te_buf_add(&b, "\"", 1);
	}
	rc = add_attrs(&b, &t->el[TE_ROOT], TE_ROOT);
	if (rc)
		goto out;
	te_buf_adds(&b, ">\n  <FirmaResponsables>\n");
	for (size_t i = 0; i < t->nfirmas; i++) {
		te_buf_adds(&b, "    <FirmaResponsable");
		rc = add_attrs(&b, &t->firmas[i], TE_FIRMA);
		if (rc)
			goto out;
		te_buf_adds(&b, "/>\n");
	}
	te_buf_adds(&b, "  </FirmaResponsables>\n");
	for (int e = TE_INSTITUCION; e < TE_NELEM; e++) {
		if (!t->el[e].present)
			continue;
		te_buf_adds(&b, "  <");
		te_buf_adds(&b, te_elem_name(e));
		rc = add_attrs(&b, &t->el[e], e);
		if (rc)
			goto out;
		te_buf_adds(&b, "/>\n");
	}
	te_buf_adds(&b, "</TituloElectronico>\n");
	rc = te_buf_take(&b, out, len);
out:
	te_buf_free(&b);
	return rc;
}

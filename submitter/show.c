/* A title for a person (`titulos show`): text or JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "titulo-internal.h"

/* Attributes shown in the text view, in XSD order, skipping the long
 * Base64 values (shown as their size). */
static void text_node(struct te_buf *b, const struct te_node *n, int e, const char *title)
{
	te_buf_addf(b, "%s\n", title);
	for (size_t a = 0; a < te_elem_nattrs(e); a++) {
		const char *name = te_elem_attr(e, a), *v = n->v[a];
		if (!v)
			continue;
		if (strcmp(name, "sello") == 0 || strcmp(name, "certificadoResponsable") == 0 ||
		    strcmp(name, "selloTitulo") == 0 || strcmp(name, "selloAutenticacion") == 0)
			te_buf_addf(b, "  %-32s (%zu characters of Base64)\n", name, strlen(v));
		else
			te_buf_addf(b, "  %-32s %s\n", name, v[0] ? v : "(empty)");
	}
}

int titulo_show_text(const titulo *t, char **out)
{
	struct te_buf b = { 0 };
	char title[96];
	if (!t || !out)
		return FIRMANTE_E_BAD_REQUEST;
	te_buf_addf(&b, "Título Electrónico %s, folioControl %s\n",
		    titulo_attr(t, "TituloElectronico", "version")
			    ? titulo_attr(t, "TituloElectronico", "version")
			    : "(no version)",
		    titulo_attr(t, "TituloElectronico", "folioControl")
			    ? titulo_attr(t, "TituloElectronico", "folioControl")
			    : "(none)");
	for (size_t i = 0; i < t->nfirmas; i++) {
		const char *s = t->firmas[i].v[te_attr_index(TE_FIRMA, "sello")];
		snprintf(title, sizeof(title), "FirmaResponsable[%zu]%s", i + 1,
			 s && s[0] ? " (signed)" : " (not signed)");
		text_node(&b, &t->firmas[i], TE_FIRMA, title);
	}
	for (int e = TE_INSTITUCION; e < TE_NELEM; e++)
		if (t->el[e].present)
			text_node(&b, &t->el[e], e, te_elem_name(e));
	return te_buf_take(&b, out, NULL);
}

static json_t *json_node(const struct te_node *n, int e)
{
	json_t *o = json_object();
	for (size_t a = 0; o && a < te_elem_nattrs(e); a++)
		if (n->v[a] && json_object_set_new(o, te_elem_attr(e, a), json_string(n->v[a])) != 0) {
			json_decref(o);
			return NULL;
		}
	return o;
}

int titulo_show_json(const titulo *t, char **out)
{
	int rc;
	json_t *root = NULL, *firmas = NULL;
	if (!t || !out)
		return FIRMANTE_E_BAD_REQUEST;
	root = json_node(&t->el[TE_ROOT], TE_ROOT);
	firmas = json_array();
	if (!root || !firmas) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->nfirmas; i++) {
		json_t *f = json_node(&t->firmas[i], TE_FIRMA);
		if (!f || json_array_append_new(firmas, f) != 0) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
	}
	if (json_object_set(root, "FirmaResponsables", firmas) != 0) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	for (int e = TE_INSTITUCION; e < TE_NELEM; e++) {
		if (!t->el[e].present)
			continue;
		json_t *o = json_node(&t->el[e], e);
		if (!o || json_object_set_new(root, te_elem_name(e), o) != 0) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
	}
	char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (!s) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	*out = s;
	rc = 0;
out:
	json_decref(firmas);
	json_decref(root);
	return rc;
}

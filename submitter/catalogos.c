/* The DGP catalogs (§4) read from catalogos.csv at run time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/util.h"
#include "te-csv.h"
#include "titulo-internal.h"

struct titulo_catalogos {
	struct te_csv csv; /* rows[1..]: catalogo,id,descripcion,detalle,nota */
};

void titulo_catalogos_free(titulo_catalogos *c)
{
	if (!c)
		return;
	te_csv_free(&c->csv);
	free(c);
}

static const struct te_csv_row *find(const titulo_catalogos *c, const char *catalogo,
				     const char *id)
{
	if (!c || !catalogo || !id)
		return NULL;
	for (size_t i = 1; i < c->csv.nrows; i++) {
		const struct te_csv_row *r = &c->csv.rows[i];
		if (strcmp(r->f[0], catalogo) == 0 && strcmp(r->f[1], id) == 0)
			return r;
	}
	return NULL;
}

const char *titulo_catalogo_descripcion(const titulo_catalogos *c, const char *catalogo,
					const char *id)
{
	const struct te_csv_row *r = find(c, catalogo, id);
	return r ? r->f[2] : NULL;
}

const char *titulo_catalogo_detalle(const titulo_catalogos *c, const char *catalogo,
				    const char *id)
{
	const struct te_csv_row *r = find(c, catalogo, id);
	return r ? r->f[3] : NULL;
}

int titulo_catalogos_load(const char *path, titulo_catalogos **out, struct titulo_error *err)
{
	int rc;
	char buf[4096], why[256];
	titulo_catalogos *c = NULL;

	if (!path) {
		if (fm_data_path("catalogos.csv", buf, sizeof(buf)) != 0) {
			te_error(err, FIRMANTE_E_CONFIG, 0, "catalogos.csv",
				 "catalogos.csv not found (set FIRMANTE_DATADIR)");
			return FIRMANTE_E_CONFIG;
		}
		path = buf;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	rc = te_csv_read(path, 1u << 20, 10000, 0, &c->csv, why, sizeof(why));
	if (rc) {
		te_error(err, rc == FIRMANTE_E_NOMEM ? rc : FIRMANTE_E_CONFIG, 0, path, "%s", why);
		rc = rc == FIRMANTE_E_NOMEM ? rc : FIRMANTE_E_CONFIG;
		goto out;
	}
	if (c->csv.nrows < 1 || c->csv.rows[0].n < 4 || strcmp(c->csv.rows[0].f[0], "catalogo") ||
	    strcmp(c->csv.rows[0].f[1], "id") || strcmp(c->csv.rows[0].f[2], "descripcion") ||
	    strcmp(c->csv.rows[0].f[3], "detalle")) {
		te_error(err, FIRMANTE_E_CONFIG, 1, path,
			 "header must start with catalogo,id,descripcion,detalle");
		rc = FIRMANTE_E_CONFIG;
		goto out;
	}
	for (size_t i = 1; i < c->csv.nrows; i++) {
		const struct te_csv_row *r = &c->csv.rows[i];
		if (r->n < 4 || !r->f[0][0] || !r->f[1][0] || !r->f[2][0]) {
			te_error(err, FIRMANTE_E_CONFIG, (int)i + 1, path,
				 "row %zu needs catalogo, id and descripcion", i + 1);
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		char *norm = NULL;
		int changed = 0;
		int nr = titulo_normalize(r->f[2], &norm, &changed);
		free(norm);
		if (nr == FIRMANTE_E_NOMEM) {
			rc = nr;
			goto out;
		}
		if (nr || changed) {
			/* §4, §13.3: the DGP compares these texts byte for byte */
			te_error(err, FIRMANTE_E_CONFIG, (int)i + 1, path,
				 "row %zu: the text of %s id %s, \"%s\", is not in normal form "
				 "(leading, trailing or doubled spaces, or decomposed accents); the "
				 "DGP would reject it",
				 i + 1, r->f[0], r->f[1], r->f[2]);
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
		if (find(c, r->f[0], r->f[1]) != r) {
			te_error(err, FIRMANTE_E_CONFIG, (int)i + 1, path,
				 "row %zu repeats %s id %s", i + 1, r->f[0], r->f[1]);
			rc = FIRMANTE_E_CONFIG;
			goto out;
		}
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	titulo_catalogos_free(c);
	return rc;
}

/*
 * The graduates' CSV (submitter/build.c, csvread.c: titulo_build_csv) with
 * the example institution. The input is the CSV file's content.
 * Properties: only documented return codes; a batch exactly when there is
 * no error finding; one title per row, each serializing and parsing again
 * with a cadena for every signer.
 */
#include <string.h>
#include <unistd.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "firmante/titulo.h"
#include "fuzz.h"

static titulo_catalogos *g_cat;
static struct titulo_config *g_conf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct titulo_findings f;
	struct titulo_error err;
	char path[4096];

	(void)argc;
	(void)argv;
	memset(&f, 0, sizeof(f));
	if (titulo_catalogos_load(NULL, &g_cat, &err) != 0 ||
	    titulo_config_load(fuzz_source_path("examples/institucion.conf", path, sizeof(path)),
			       g_cat, &g_conf, &f) != 0) {
		fprintf(stderr, "fuzz_csv: the catalogs or the example institution do not load\n");
		abort();
	}
	titulo_findings_clear(&f);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct titulo_findings f;
	struct titulo_lote *lote = NULL;
	char path[64];
	int fd, rc;

	memset(&f, 0, sizeof(f));
	fd = fuzz_memfile(data, size, path, sizeof(path));
	if (fd < 0)
		return 0;
	rc = titulo_build_csv(g_conf, g_cat, path, &lote, &f);
	close(fd);
	if (rc == 0) {
		if (f.errors)
			fuzz_fail("a batch built with %zu error findings", f.errors);
		for (size_t i = 0; i < lote->count; i++) {
			titulo *again = NULL;
			char *xml = NULL, *cadena = NULL;
			size_t len = 0;

			if (!lote->folios[i] || !lote->folios[i][0])
				fuzz_fail("title %zu has no folioControl", i);
			if (titulo_serialize(lote->titulos[i], &xml, &len) != 0)
				fuzz_fail("title %zu does not serialize", i);
			if (titulo_parse(xml, len, &again, NULL) != 0)
				fuzz_fail("title %zu does not parse after serializing:\n%s", i, xml);
			for (size_t s = 0; s < titulo_firmantes_count(again); s++) {
				if (titulo_cadena(again, s, &cadena, &len) != 0)
					fuzz_fail("title %zu, signer %zu: no cadena:\n%s", i, s, xml);
				free(cadena);
			}
			titulo_free(again);
			free(xml);
		}
		titulo_lote_free(lote);
	} else if (rc == FIRMANTE_E_INVALID) {
		if (!f.errors)
			fuzz_fail("FIRMANTE_E_INVALID without an error finding");
	} else if (rc != FIRMANTE_E_IO && rc != FIRMANTE_E_TOO_LARGE && rc != FIRMANTE_E_NOMEM) {
		fuzz_fail("titulo_build_csv: undocumented error %d", rc);
	}
	titulo_findings_clear(&f);
	return 0;
}

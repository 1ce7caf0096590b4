/*
 * The institution configuration (submitter/config.c, titulo_config_load).
 * The input is the INI file's content.
 * Properties: only documented return codes; a configuration exactly when
 * there is no error finding, with at least one career and one signer, each
 * signer found again by its CURP.
 */
#include <string.h>
#include <unistd.h>

#include "firmante/protocol.h"
#include "firmante/titulo-build.h"
#include "fuzz.h"

static titulo_catalogos *g_cat;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct titulo_error err;

	(void)argc;
	(void)argv;
	if (titulo_catalogos_load(NULL, &g_cat, &err) != 0) {
		fprintf(stderr, "fuzz_titulo_config: the catalogs do not load\n");
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct titulo_findings f;
	struct titulo_config *c = NULL;
	char path[64];
	int fd, rc;

	memset(&f, 0, sizeof(f));
	fd = fuzz_memfile(data, size, path, sizeof(path));
	if (fd < 0)
		return 0;
	rc = titulo_config_load(path, g_cat, &c, &f);
	close(fd);
	if (rc == 0) {
		if (f.errors)
			fuzz_fail("a configuration loaded with %zu error findings", f.errors);
		if (!c->ncarreras || !c->nfirmantes)
			fuzz_fail("a configuration without careers or signers");
		for (size_t i = 0; i < c->nfirmantes; i++)
			if (titulo_config_firmante_by_curp(c, c->firmantes[i].curp) !=
			    &c->firmantes[i])
				fuzz_fail("signer %zu is not found by its CURP", i);
		titulo_config_free(c);
	} else if (rc == FIRMANTE_E_CONFIG) {
		if (!f.errors)
			fuzz_fail("FIRMANTE_E_CONFIG without an error finding");
	} else if (rc != FIRMANTE_E_NOMEM) {
		fuzz_fail("titulo_config_load: undocumented error %d", rc);
	}
	titulo_findings_clear(&f);
	return 0;
}

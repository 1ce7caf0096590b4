/*
 * firmanted's paired browser origins file (agent/pairing.c,
 * agent_pairings_open) and origin syntax (agent_origin_valid). The input
 * is the file's content (a file of ours, mode 0600); its first line is also tried as
 * an origin.
 * Properties: only documented return codes; a failure explains itself; an
 * origin that is not valid is never paired; the JSON list is an array.
 */
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_pairings *ps = NULL;
	char path[4096], err[1024], origin[512];
	size_t n;
	json_t *j;
	int rc;

	n = 0;
	while (n < size && n < sizeof(origin) - 1 && data[n] != '\n' && data[n] != ' ')
		n++;
	memcpy(origin, data, n);
	origin[n] = '\0';
	/* A real file: the loader refuses symbolic links such as /proc/self/fd/N. */
	if (fuzz_write_file(fuzz_private_path("pairings", path, sizeof(path)), data, size))
		fuzz_fail("cannot write %s", path);
	err[0] = '\0';
	rc = agent_pairings_open(path, &ps, err, sizeof(err));
	if (rc == FIRMANTE_E_CONFIG) {
		if (!err[0])
			fuzz_fail("FIRMANTE_E_CONFIG without a message");
		return 0;
	}
	if (rc == FIRMANTE_E_NOMEM)
		return 0;
	if (rc != 0)
		fuzz_fail("agent_pairings_open: undocumented error %d (%s)", rc, err);
	if (agent_pairings_has(ps, origin) && !agent_origin_valid(origin))
		fuzz_fail("the invalid origin \"%s\" is paired", origin);
	(void)agent_pairings_check(ps, origin,
				   "0000000000000000000000000000000000000000000000000000000000000000");
	j = agent_pairings_json(ps);
	if (!j || !json_is_array(j))
		fuzz_fail("agent_pairings_json is not an array");
	json_decref(j);
	agent_pairings_free(ps);
	return 0;
}

/*
 * firmanted's caller policy file (agent/policy.c, agent_policy_load). The
 * input is the INI file's content (a file of ours, mode 0600).
 * Properties: only documented return codes; a failure explains itself; a
 * loaded set keeps within its caps (policies, keys per policy, daily cap),
 * and matching a caller, checking keys and reserving/releasing a
 * signature work on whatever was loaded.
 */
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_policy_set *set = NULL;
	struct agent_caller caller;
	char path[4096], err[1024], detail[256];
	int rc;

	/* A real file: the loader refuses symbolic links such as /proc/self/fd/N. */
	if (fuzz_write_file(fuzz_private_path("policy.conf", path, sizeof(path)), data, size))
		fuzz_fail("cannot write %s", path);
	err[0] = '\0';
	rc = agent_policy_load(path, "/nonexistent/fuzz-audit.log", &set, err, sizeof(err));
	if (rc == FIRMANTE_E_CONFIG) {
		if (!err[0])
			fuzz_fail("FIRMANTE_E_CONFIG without a message");
		return 0;
	}
	if (rc == FIRMANTE_E_NOMEM)
		return 0;
	if (rc != 0)
		fuzz_fail("agent_policy_load: undocumented error %d (%s)", rc, err);
	if (agent_policy_count(set) > AGENT_MAX_POLICIES)
		fuzz_fail("%zu policies", agent_policy_count(set));
	for (size_t i = 0; i < agent_policy_count(set); i++) {
		const struct agent_policy *p = agent_policy_get(set, i);

		if (!p)
			fuzz_fail("policy %zu is NULL", i);
		if (p->n_keys > AGENT_MAX_POLICY_KEYS || p->daily_cap > AGENT_MAX_DAILY_CAP)
			fuzz_fail("policy %s: %zu keys, cap %lu", p->name, p->n_keys, p->daily_cap);
		if (!memchr(p->name, '\0', sizeof(p->name)) || !memchr(p->exe, '\0', sizeof(p->exe)))
			fuzz_fail("policy %zu: a name or exe not terminated", i);
		(void)agent_policy_allows_key(p, "30001000000300023685");
		memset(&caller, 0, sizeof(caller));
		caller.uid = p->uid;
		caller.pid = 1;
		if (strlen(p->exe) >= sizeof(caller.exe))
			continue;
		memcpy(caller.exe, p->exe, strlen(p->exe) + 1);
		if (agent_policy_match(set, &caller) && p->unattended) {
			if (agent_policy_reserve(set, p, detail, sizeof(detail)) == 0)
				agent_policy_release(set, p);
		}
	}
	agent_policy_free(set);
	return 0;
}

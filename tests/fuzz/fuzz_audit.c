/*
 * The audit log: the agent reading the end of an existing log to continue
 * its hash chain (agent/audit.c: agent_audit_open, agent_audit_append,
 * agent_audit_count_signed_today) and the verifier of `firmante audit
 * verify` (client/cmd_audit.c). The input is the log's content (a file of
 * ours, mode 0600, no .head file).
 * Properties: the verifier answers 0 (intact) or 1 (not intact), never
 * anything else for a readable file; when the log was intact and the
 * agent accepts it, the record the agent appends keeps it intact.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "commands.h"
#include "firmante/protocol.h"
#include "fuzz.h"

/* `firmante audit verify --file PATH --json`, its output discarded. */
static int verify(const char *path)
{
	char *argv[] = { "audit", "verify", "--file", (char *)path, NULL };
	int saved, null, rc;

	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (saved < 0 || null < 0)
		fuzz_fail("cannot redirect stdout");
	dup2(null, STDOUT_FILENO);
	close(null);
	rc = cmd_audit(NULL, 1, 4, argv);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_audit *a = NULL;
	struct agent_caller caller;
	struct agent_audit_record r;
	char path[4096], head[4200], err[1024];
	unsigned long today = 0;
	int before, after, rc;

	fuzz_private_path("audit.log", path, sizeof(path));
	snprintf(head, sizeof(head), "%s.head", path);
	unlink(head);
	if (fuzz_write_file(path, data, size))
		fuzz_fail("cannot write %s", path);
	before = verify(path);
	if (before != 0 && before != 1)
		fuzz_fail("audit verify answered %d for a readable log", before);
	if (agent_audit_count_signed_today(path, "fuzz", &today) != 0)
		fuzz_fail("counting today's signatures of a readable log failed");
	err[0] = '\0';
	rc = agent_audit_open(path, &a, err, sizeof(err));
	if (rc != 0) {
		if (rc != FIRMANTE_E_CONFIG && rc != FIRMANTE_E_IO && rc != FIRMANTE_E_NOMEM)
			fuzz_fail("agent_audit_open: undocumented error %d", rc);
		if (!err[0] && rc != FIRMANTE_E_NOMEM)
			fuzz_fail("agent_audit_open failed without a message");
		return 0;
	}
	memset(&caller, 0, sizeof(caller));
	caller.uid = getuid();
	caller.pid = getpid();
	snprintf(caller.exe, sizeof(caller.exe), "/usr/bin/titulos");
	memset(&r, 0, sizeof(r));
	r.event = "sign";
	r.caller = &caller;
	r.policy = "fuzz";
	r.folio_control = "FUZZ-1";
	r.decision = "unattended";
	r.result = "signed";
	rc = agent_audit_append(a, &r);
	agent_audit_close(a);
	if (rc != 0)
		fuzz_fail("appending to an accepted log failed (%d)", rc);
	after = verify(path);
	if (before == 0 && after != 0)
		fuzz_fail("an intact log of %zu bytes is no longer intact after the agent's append",
			  size);
	return 0;
}

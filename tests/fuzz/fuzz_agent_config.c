/*
 * firmanted's configuration (agent/config.c, agent_config_load). The input
 * is the INI file's content.
 * Properties: only documented return codes; a failure always explains
 * itself starting with the file name; a loaded configuration keeps within
 * its caps (modules, pinentry arguments, approval-timeout, max-clients)
 * and the pinentry argument vector is NULL-terminated; clearing frees all.
 */
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* The defaults place the socket under XDG_RUNTIME_DIR. */
	setenv("XDG_RUNTIME_DIR", "/run/user/fuzz", 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_config cfg;
	char path[64], err[1024];
	int fd, rc;

	err[0] = '\0';
	if (agent_config_defaults(&cfg, err, sizeof(err)) != 0)
		fuzz_fail("defaults: %s", err);
	fd = fuzz_memfile(data, size, path, sizeof(path));
	if (fd < 0) {
		agent_config_clear(&cfg);
		return 0;
	}
	rc = agent_config_load(&cfg, path, false, err, sizeof(err));
	close(fd);
	if (rc == 0) {
		if (cfg.n_modules > AGENT_MAX_MODULES)
			fuzz_fail("%zu modules", cfg.n_modules);
		for (size_t i = 0; i < cfg.n_modules; i++)
			if (!cfg.modules[i])
				fuzz_fail("module %zu is NULL", i);
		if (cfg.pinentry_argc < 1 || cfg.pinentry_argc > AGENT_MAX_PINENTRY_ARGS ||
		    cfg.pinentry_argv[cfg.pinentry_argc] != NULL || !cfg.pinentry_argv[0] ||
		    !cfg.pinentry_argv[0][0])
			fuzz_fail("pinentry vector of %zu arguments", cfg.pinentry_argc);
		if (cfg.approval_timeout < 1 || cfg.approval_timeout > AGENT_MAX_APPROVAL_TIMEOUT)
			fuzz_fail("approval-timeout %ld", cfg.approval_timeout);
		if (cfg.max_clients < 1 || cfg.max_clients > AGENT_MAX_CLIENTS_LIMIT)
			fuzz_fail("max-clients %u", cfg.max_clients);
		if (!memchr(cfg.socket_path, '\0', sizeof(cfg.socket_path)) || !cfg.socket_path[0])
			fuzz_fail("socket path empty or not terminated");
	} else if (rc == FIRMANTE_E_CONFIG || rc == FIRMANTE_E_NOMEM) {
		if (strncmp(err, path, strlen(path)) != 0)
			fuzz_fail("the error \"%s\" does not name the file", err);
	} else {
		fuzz_fail("agent_config_load: undocumented error %d", rc);
	}
	agent_config_clear(&cfg);
	return 0;
}

/*
 * firmanted --check-config: permission checks of what the configuration
 * names (prefix agent_check_). The syntax, keys and values are checked by
 * agent_config_load(); this looks at who could change the files the agent
 * trusts.
 */
#ifndef FIRMANTE_AGENT_CHECKCONFIG_H
#define FIRMANTE_AGENT_CHECKCONFIG_H

#include "agent.h"

/* Most problems reported by one check (the rest are counted, not named). */
#define AGENT_CHECK_MAX_REPORTS 64
/* Directories walked up from one path (a deeper path is unsafe). */
#define AGENT_CHECK_MAX_DEPTH 64

/*
 * agent_check_permissions - report what in @cfg another user could change:
 *  - the configuration file cfg->source (when one was read), its directory
 *    and every directory above it;
 *  - every PKCS#11 module (cfg->modules: code that runs inside the agent)
 *    and the pinentry program (cfg->pinentry_argv[0], looked up in $PATH
 *    when it has no '/'), as given and after resolving symbolic links, with
 *    the directories above them;
 *  - the socket's directory when it exists: it must belong to the agent's
 *    user and be closed to group and others (docs/security.md); with
 *    "group = NAME" it may be readable by its group (0750).
 * A file or directory is unsafe when it belongs to a user other than root
 * or the agent's user, or is writable by group or others (a directory with
 * the sticky bit, like /tmp, may be writable by others).
 * @report: called once per problem with one line "FILE:LINE: message"
 *          (LINE is the line of the key in cfg->source; "FILE: message" for
 *          the configuration file itself and for built-in defaults); at
 *          most AGENT_CHECK_MAX_REPORTS calls.
 * Returns 0 when nothing unsafe was found, FIRMANTE_E_CONFIG when something
 * was (each reported), FIRMANTE_E_NOMEM.
 */
int agent_check_permissions(const struct agent_config *cfg,
			    void (*report)(void *ctx, const char *line), void *ctx);

/*
 * agent_check_pinentry - whether cfg->pinentry_argv[0] can be started:
 * found (a path, or a name searched in PATH like execvp) and executable.
 * @msg: on FIRMANTE_E_CONFIG, one sentence naming the program and why.
 * Returns 0 or FIRMANTE_E_CONFIG.
 */
int agent_check_pinentry(const struct agent_config *cfg, char *msg, size_t size);

/*
 * agent_check_module - whether the PKCS#11 module at @path can be loaded
 * (dlopen) and exports C_GetFunctionList (PKCS#11 v2.40 §5.2).
 * @msg: on FIRMANTE_E_CONFIG, one sentence naming the path and the
 * loader's reason. Loads and unloads the module.
 * Returns 0 or FIRMANTE_E_CONFIG.
 */
int agent_check_module(const char *path, char *msg, size_t size);

#endif

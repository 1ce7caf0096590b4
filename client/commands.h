/*
 * Subcommands of the firmante CLI that live in their own files
 * (client/cmd_*.c). Each takes the global options already parsed and its
 * own arguments (@argv[0] is the command word) and returns the exit status
 * (0 success, 1 failure or "no", 2 usage error, 3 agent unreachable or error).
 */
#ifndef FIRMANTE_CLIENT_COMMANDS_H
#define FIRMANTE_CLIENT_COMMANDS_H

/* firmante audit show|verify [--file PATH]: reads the audit log itself. */
int cmd_audit(const char *socket_path, int as_json, int argc, char **argv);

/* firmante pair list | pair revoke ORIGIN: through the agent. */
int cmd_pair(const char *socket_path, int as_json, int argc, char **argv);

/* firmante approve [--list | ID... | --all] [--deny]: through the agent. */
int cmd_approve(const char *socket_path, int as_json, int argc, char **argv);

/* firmante doctor [options]: checks the workstation (client/cmd_doctor.c). */
int cmd_doctor(const char *socket_path, int as_json, int argc, char **argv);

#endif

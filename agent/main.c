/*
 * firmanted - the firmante signing agent.
 *
 * Holds the PKCS#11 tokens, serves docs/protocol.md on a Unix socket, and
 * signs a Título Electrónico only after the holder approved it through
 * pinentry. Runs in the foreground; logs one line per request on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <assuan.h>
#include <libxml/parser.h>
#include <microhttpd.h>

#include "agent.h"
#include "firmante/build-config.h"
#include "firmante/protocol.h"
#include "firmante/token.h"
#include "checkconfig.h"
#include "hotplug.h"
#include "systemd.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void agent_sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			*s = '?';
}

void agent_log(const char *fmt, ...)
{
	char line[2048], stamp[32];
	struct tm tm;
	time_t now = time(NULL);
	va_list ap;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s firmanted[%ld]: %s\n", stamp, (long)getpid(), line);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: firmanted [OPTION]...\n"
		"The firmante signing agent: signs Títulos Electrónicos with keys kept on\n"
		"PKCS#11 tokens, after the holder approves each request through pinentry.\n"
		"It runs in the foreground and logs one line per request on stderr.\n"
		"\n"
		"  -c, --config FILE   configuration file (default\n"
		"                      $XDG_CONFIG_HOME/firmante/firmanted.conf; a missing\n"
		"                      default file means built-in defaults)\n"
		"      --check-config  read the configuration, report unknown keys, bad\n"
		"                      values (FILE:LINE), unsafe permissions, PKCS#11\n"
		"                      modules that do not load and a pinentry program that\n"
		"                      is missing or not executable, print the settings and\n"
		"                      exit (1 when anything is wrong)\n"
		"  -f, --foreground    run in the foreground (always the case)\n"
		"  -h, --help          show this help and exit\n"
		"  -V, --version       show the version and exit\n"
		"\n"
		"Configuration keys, section [agent]: socket, module (repeatable),\n"
		"use-p11kit-modules, pinentry, approval-timeout, allow-extractable-keys,\n"
		"max-clients, token-timeout, token-poll-interval, batch-pause-timeout,\n"
		"approval (pinentry or queue), group, pin-cache\n"
		"(TOKEN:SECONDS, opt-in), audit-log, policy, browser-port (0 = off),\n"
		"paired-origins.\n"
		"See examples/firmanted.conf, docs/protocol.md and docs/security.md.\n"
		"Under systemd (firmanted.socket) the agent serves the socket it is given\n"
		"and reports readiness. Manual: man firmanted, man firmanted.conf.\n");
}

static void print_config(const struct agent_config *cfg)
{
	printf("config = %s\n", cfg->source[0] ? cfg->source : "(built-in defaults)");
	printf("[agent]\n");
	printf("socket = %s\n", cfg->socket_path);
	for (size_t i = 0; i < cfg->n_modules; i++)
		printf("module = %s\n", cfg->modules[i]);
	printf("use-p11kit-modules = %s\n", cfg->use_p11kit_modules ? "true" : "false");
	printf("pinentry =");
	for (size_t i = 0; i < cfg->pinentry_argc; i++)
		printf(" %s", cfg->pinentry_argv[i]);
	printf("\n");
	printf("approval-timeout = %ld\n", cfg->approval_timeout);
	printf("allow-extractable-keys = %s\n", cfg->allow_extractable_keys ? "true" : "false");
	printf("max-clients = %u\n", cfg->max_clients);
	printf("audit-log = %s\n", cfg->audit_log[0] ? cfg->audit_log : "(none: set audit-log)");
	printf("policy = %s\n", cfg->policy_file[0] ? cfg->policy_file : "(none: every caller interactive)");
	printf("approval = %s\n", cfg->approval_queue ? "queue" : "pinentry");
	if (cfg->group[0])
		printf("group = %s\n", cfg->group);
	for (size_t i = 0; i < cfg->n_pin_cache; i++)
		printf("pin-cache = %s:%ld\n", cfg->pin_cache[i].token, cfg->pin_cache[i].seconds);
	printf("browser-port = %u%s\n", cfg->browser_port, cfg->browser_port ? "" : " (off)");
	printf("paired-origins = %s\n", cfg->pairings_file);
}

/* --check-config: one unsafe-permission finding per line on stderr. */
static void report_unsafe(void *ctx, const char *line)
{
	fprintf(stderr, "firmanted: %s\n", line);
}

/* A daemon may be started with 0, 1 or 2 closed; keep them taken so no
 * socket ever lands there. */
static void hold_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
			int n = open("/dev/null", O_RDWR);

			if (n >= 0 && n != fd)
				close(n);
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_config cfg;
	struct agent agent;
	struct fp11_config p11cfg;
	struct MHD_Daemon *httpd = NULL, *browserd = NULL;
	const char *config_path = NULL;
	char default_path[AGENT_PATH_MAX], err[1024];
	bool check_only = false, cfg_ready = false, listening = false;
	sigset_t stop_set;
	int opt, sig = 0, listen_fd = -1, quiesced_fd = -1, rc, status = 1;

	memset(&agent, 0, sizeof(agent));
	while ((opt = getopt_long(argc, argv, "c:fhV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'C':
			check_only = true;
			break;
		case 'f':
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("firmanted %s (protocol %d)\n", FIRMANTE_VERSION, FIRMANTE_PROTOCOL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "firmanted: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	hold_std_fds();

	err[0] = '\0';
	rc = agent_config_defaults(&cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "firmanted: %s\n", err[0] ? err : firmante_err_title(rc));
		goto out;
	}
	cfg_ready = true;
	if (config_path) {
		rc = agent_config_load(&cfg, config_path, false, err, sizeof(err));
	} else if (agent_config_default_path(default_path, sizeof(default_path)) == 0) {
		rc = agent_config_load(&cfg, default_path, true, err, sizeof(err));
	}
	if (rc) {
		fprintf(stderr, "firmanted: %s\n", err[0] ? err : firmante_err_title(rc));
		goto out;
	}
	if (check_only) {
		print_config(&cfg);
		status = agent_check_permissions(&cfg, report_unsafe, NULL) ? 1 : 0;
		goto out;
	}

	/* Signals: SIGINT/SIGTERM are taken by sigwait() in this thread only
	 * (the mask is inherited by every thread started below); a client or
	 * pinentry that goes away must not kill the agent with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGINT);
	sigaddset(&stop_set, SIGTERM);
	sigaddset(&stop_set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
	assuan_check_version(NULL);
	/* libxml2 2.9 wants its global state set up before threads parse
	 * (titulo_parse runs in connection threads). */
	xmlInitParser();

	memset(&p11cfg, 0, sizeof(p11cfg));
	p11cfg.module_paths = (const char *const *)cfg.modules;
	p11cfg.n_module_paths = cfg.n_modules;
	p11cfg.use_p11kit_registered = cfg.use_p11kit_modules;
	rc = fp11_open(&p11cfg, &agent.p11);
	if (rc) {
		bool named = false;

		agent.p11 = NULL;
		/* Name the module that does not load, with the loader's reason. */
		for (size_t i = 0; i < cfg.n_modules; i++) {
			if (agent_check_module(cfg.modules[i], err, sizeof(err)) == 0)
				continue;
			fprintf(stderr, "firmanted: %s (\"module\" in %s)\n", err,
				cfg.source[0] ? cfg.source : "the configuration");
			named = true;
		}
		if (!named)
			fprintf(stderr, "firmanted: loading the PKCS#11 modules failed: %s\n",
				firmante_err_title(rc));
		goto out;
	}
	/* A pinentry that cannot start is said now, not at the first signature.
	 * Not fatal: an agent whose policies sign unattended needs none. */
	if (agent_check_pinentry(&cfg, err, sizeof(err)))
		fprintf(stderr,
			"firmanted: warning: %s; every request that needs the holder's approval "
			"or PIN will fail with pinentry-failed until \"pinentry\" in %s is fixed\n",
			err, cfg.source[0] ? cfg.source : "the configuration");
	agent.cfg = &cfg;
	agent.started = time(NULL);
	/* The guard: a group allowed besides us, audit log, caller policies,
	 * paired browser origins. */
	if (cfg.group[0]) {
		struct group gr, *grp = NULL;
		char grbuf[4096];

		if (getgrnam_r(cfg.group, &gr, grbuf, sizeof(grbuf), &grp) != 0 || !grp) {
			fprintf(stderr, "firmanted: group \"%s\" does not exist\n", cfg.group);
			goto out;
		}
		cfg.group_gid = grp->gr_gid;
	}
	if (!cfg.audit_log[0]) {
		fprintf(stderr, "firmanted: no audit log path ($HOME unset); set audit-log\n");
		goto out;
	}
	rc = agent_audit_open(cfg.audit_log, &agent.audit, err, sizeof(err));
	if (!rc)
		rc = agent_policy_load(cfg.policy_file, cfg.audit_log, &agent.policies, err,
				       sizeof(err));
	if (!rc && cfg.browser_port)
		rc = agent_pairings_open(cfg.pairings_file, &agent.pairings, err, sizeof(err));
	if (!rc && agent_hotplug_start(agent.p11, cfg.token_poll_interval, true,
				       &agent.hotplug) != 0) {
		agent.hotplug = NULL;
		snprintf(err, sizeof(err), "the token watcher could not start");
		rc = FIRMANTE_E_INTERNAL;
	}
	if (!rc)
		agent_log("tokens watched by %s (token-poll-interval %ld s)",
			  agent_hotplug_method(agent.hotplug), cfg.token_poll_interval);
	if (!rc && agent_pincache_start(&cfg, agent.p11) != 0) {
		snprintf(err, sizeof(err), "the PIN cache could not start");
		rc = FIRMANTE_E_INTERNAL;
	}
	if (rc) {
		fprintf(stderr, "firmanted: %s\n", err[0] ? err : firmante_err_title(rc));
		goto out;
	}

	/* Socket activation (firmanted.socket) hands us the socket; else we
	 * make our own. */
	rc = agent_systemd_listen_fd(&listen_fd, err, sizeof(err));
	if (rc == 0 && listen_fd < 0) {
		rc = agent_listen_unix_group(cfg.socket_path, (int)cfg.max_clients,
					     cfg.group_gid, &listen_fd, err, sizeof(err));
		listening = rc == 0;
	}
	if (rc) {
		fprintf(stderr, "firmanted: %s\n", err);
		goto out;
	}
	rc = agent_http_start(&agent, listen_fd, &httpd);
	if (rc) {
		fprintf(stderr, "firmanted: the HTTP server did not start\n");
		goto out;
	}
	listen_fd = -1; /* the HTTP daemon owns it */
	if (cfg.browser_port) {
		rc = agent_http_start_browser(&agent, &browserd, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "firmanted: %s\n", err);
			goto out;
		}
		agent_log("browser listener on 127.0.0.1:%u (paired origins in %s)",
			  cfg.browser_port, cfg.pairings_file);
	}
	agent_log("firmanted %s listening on %s (uid %lu, %u clients max, approval timeout %ld s)",
		  FIRMANTE_VERSION, listening ? cfg.socket_path : "the socket from systemd",
		  (unsigned long)geteuid(), cfg.max_clients,
		  cfg.approval_timeout);

	agent_systemd_ready(listening ? cfg.socket_path : "the socket from systemd");
	while (sigwait(&stop_set, &sig) == 0 && sig == SIGHUP)
		agent_log("SIGHUP ignored (restart the agent to reload its configuration)");
	agent_log("signal %d: shutting down", sig);
	agent_systemd_stopping();
	status = 0;
out:
	/* Stop taking connections, close an open dialog, then wait for the
	 * connection threads. */
	if (httpd)
		quiesced_fd = MHD_quiesce_daemon(httpd);
	agent_pinentry_abort_all();
	agent_queue_close();
	agent_pincache_stop();
	agent_hotplug_stop(agent.hotplug); /* long-polls and paused batches return */
	agent_http_stop(browserd);
	agent_http_stop(httpd);
	if (quiesced_fd >= 0)
		close(quiesced_fd);
	if (listen_fd >= 0)
		close(listen_fd);
	if (listening)
		unlink(cfg.socket_path);
	agent_hotplug_free(agent.hotplug);
	fp11_close(agent.p11);
	agent_pairings_free(agent.pairings);
	agent_policy_free(agent.policies);
	agent_audit_close(agent.audit);
	if (cfg_ready)
		agent_config_clear(&cfg);
	return status;
}

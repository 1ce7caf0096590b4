/*
 * firmanted: the PIN cache, opt-in per token (configuration
 * "pin-cache = TOKEN:SECONDS", TOKEN a label or serial). A PIN the token
 * accepted is kept in locked memory for at most SECONDS, so that the holder
 * still approves every signature but types the PIN once. An entry is wiped
 * when its time is up, when the token refuses it, and when the token is no
 * longer present (a watcher thread lists the tokens every 2 s while anything
 * is cached). Never used for CKU_CONTEXT_SPECIFIC logins, never for
 * unattended callers (they have their own PIN file). The token's login
 * made with a cached PIN is kept under the entry's name
 * ("pin-cache:<n>", fp11_sign_as) and ends when the entry is wiped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/util.h"

struct pc_entry {
	bool used;
	char serial[17];
	char label[33];
	char manufacturer[33];
	char model[17];
	char pin[AGENT_PIN_MAX + 1];
	struct timespec expires; /* CLOCK_MONOTONIC */
	unsigned long gen;       /* names the login kept with this entry */
};

/* Entries wiped under the lock, whose kept login is ended after it. */
struct pc_dropped {
	struct fp11_token_info tok;
	char owner[FP11_OWNER_MAX];
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pc_entry e[AGENT_MAX_PIN_CACHE];
	const struct agent_config *cfg;
	fp11_ctx *p11;
	pthread_t watcher;
	bool started, stop;
	unsigned long gen;
} pc = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Seconds the configuration allows for @tok, 0 = not cached. */
static long allowed(const struct fp11_token_info *tok)
{
	const struct agent_config *cfg = pc.cfg;

	if (!cfg)
		return 0;
	for (size_t i = 0; i < cfg->n_pin_cache; i++)
		if (!strcmp(cfg->pin_cache[i].token, tok->label) ||
		    !strcmp(cfg->pin_cache[i].token, tok->serial))
			return cfg->pin_cache[i].seconds;
	return 0;
}

static struct pc_entry *find(const struct fp11_token_info *tok)
{
	for (size_t i = 0; i < AGENT_MAX_PIN_CACHE; i++)
		if (pc.e[i].used && !strcmp(pc.e[i].serial, tok->serial) &&
		    !strcmp(pc.e[i].label, tok->label))
			return &pc.e[i];
	return NULL;
}

static void owner_of(const struct pc_entry *e, char *buf, size_t size)
{
	snprintf(buf, size, "pin-cache:%lu", e->gen);
}

/* Wipe @e; with @d, note its kept login for end_logins(). */
static void drop(struct pc_entry *e, struct pc_dropped *d)
{
	if (d) {
		memset(d, 0, sizeof(*d));
		memcpy(d->tok.serial, e->serial, sizeof(d->tok.serial));
		memcpy(d->tok.label, e->label, sizeof(d->tok.label));
		memcpy(d->tok.manufacturer, e->manufacturer, sizeof(d->tok.manufacturer));
		memcpy(d->tok.model, e->model, sizeof(d->tok.model));
		owner_of(e, d->owner, sizeof(d->owner));
	}
	fm_wipe(e, sizeof(*e));
}

/* The logins kept with wiped entries end with them (called unlocked:
 * fp11_drop_login never waits for a busy token). */
static void end_logins(fp11_ctx *p11, const struct pc_dropped *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fp11_drop_login(p11, &d[i].tok, d[i].owner);
}

static bool expired(const struct pc_entry *e, const struct timespec *now)
{
	return now->tv_sec > e->expires.tv_sec ||
	       (now->tv_sec == e->expires.tv_sec && now->tv_nsec >= e->expires.tv_nsec);
}

static bool any_used(void)
{
	for (size_t i = 0; i < AGENT_MAX_PIN_CACHE; i++)
		if (pc.e[i].used)
			return true;
	return false;
}

static void *watcher_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pc.mu);
	while (!pc.stop) {
		struct timespec now, wake;
		struct fp11_token_info *toks = NULL;
		size_t nt = 0, nd = 0;
		struct pc_dropped gone[AGENT_MAX_PIN_CACHE];

		if (!any_used()) {
			pthread_cond_wait(&pc.cv, &pc.mu);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &wake);
		wake.tv_sec += 2;
		pthread_cond_timedwait(&pc.cv, &pc.mu, &wake);
		if (pc.stop)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		for (size_t i = 0; i < AGENT_MAX_PIN_CACHE; i++)
			if (pc.e[i].used && expired(&pc.e[i], &now))
				drop(&pc.e[i], &gone[nd++]);
		if (!any_used()) {
			pthread_mutex_unlock(&pc.mu);
			end_logins(pc.p11, gone, nd);
			pthread_mutex_lock(&pc.mu);
			continue;
		}
		/* Listing takes no token lock (pkcs11/); do it unlocked. */
		pthread_mutex_unlock(&pc.mu);
		if (fp11_list_tokens(pc.p11, &toks, &nt) != 0) {
			toks = NULL;
			nt = 0;
		}
		pthread_mutex_lock(&pc.mu);
		for (size_t i = 0; i < AGENT_MAX_PIN_CACHE; i++) {
			bool present = false;

			if (!pc.e[i].used)
				continue;
			for (size_t k = 0; k < nt; k++)
				if (!strcmp(toks[k].serial, pc.e[i].serial) &&
				    !strcmp(toks[k].label, pc.e[i].label))
					present = true;
			if (!present) {
				agent_log("token \"%s\" is gone: its cached PIN is wiped", pc.e[i].label);
				drop(&pc.e[i], &gone[nd++]);
			}
		}
		free(toks);
		pthread_mutex_unlock(&pc.mu);
		end_logins(pc.p11, gone, nd);
		pthread_mutex_lock(&pc.mu);
	}
	pthread_mutex_unlock(&pc.mu);
	return NULL;
}

int agent_pincache_start(const struct agent_config *cfg, fp11_ctx *p11)
{
	pthread_condattr_t ca;
	int rc = 0;

	if (!cfg->n_pin_cache)
		return 0;
	pthread_mutex_lock(&pc.mu);
	pc.cfg = cfg;
	pc.p11 = p11;
	/* Keep cached PINs out of swap; not fatal where mlock is refused. */
	if (mlock(pc.e, sizeof(pc.e)) != 0)
		agent_log("pin-cache: mlock failed (%s); cached PINs may be swapped out",
			  strerror(errno));
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pc.cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&pc.watcher, NULL, watcher_main, NULL) != 0)
		rc = FIRMANTE_E_INTERNAL;
	else
		pc.started = true;
	pthread_mutex_unlock(&pc.mu);
	return rc;
}

void agent_pincache_stop(void)
{
	pthread_mutex_lock(&pc.mu);
	if (!pc.started) {
		pthread_mutex_unlock(&pc.mu);
		return;
	}
	pc.stop = true;
	pthread_cond_broadcast(&pc.cv);
	pthread_mutex_unlock(&pc.mu);
	pthread_join(pc.watcher, NULL);
	pthread_mutex_lock(&pc.mu);
	for (size_t i = 0; i < AGENT_MAX_PIN_CACHE; i++)
		drop(&pc.e[i], NULL); /* fp11_close() logs every kept login out */
	pc.started = false;
	pthread_mutex_unlock(&pc.mu);
}

bool agent_pincache_get(const struct fp11_token_info *tok, char *pin, size_t pin_size)
{
	struct pc_entry *e;
	struct timespec now;
	struct pc_dropped d;
	bool hit = false, dropped = false;

	if (!allowed(tok))
		return false;
	pthread_mutex_lock(&pc.mu);
	e = find(tok);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (e && expired(e, &now)) {
		drop(e, &d);
		dropped = true;
		e = NULL;
	}
	if (e && strlen(e->pin) < pin_size) {
		memcpy(pin, e->pin, strlen(e->pin) + 1);
		hit = true;
	}
	pthread_mutex_unlock(&pc.mu);
	if (dropped)
		end_logins(pc.p11, &d, 1);
	return hit;
}

bool agent_pincache_owner(const struct fp11_token_info *tok, char *owner, size_t size)
{
	struct pc_entry *e;
	struct timespec now;
	bool alive = false;

	if (!allowed(tok))
		return false;
	pthread_mutex_lock(&pc.mu);
	e = find(tok);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (e && !expired(e, &now)) {
		owner_of(e, owner, size);
		alive = true;
	}
	pthread_mutex_unlock(&pc.mu);
	return alive;
}

void agent_pincache_put(const struct fp11_token_info *tok, const char *pin)
{
	long secs = allowed(tok);
	struct pc_entry *e;
	struct pc_dropped d;
	bool replaced = false;

	if (!secs || strlen(pin) > AGENT_PIN_MAX)
		return;
	pthread_mutex_lock(&pc.mu);
	e = find(tok);
	if (e) {
		/* The login kept with the old entry ends with it. */
		drop(e, &d);
		replaced = true;
		e = NULL;
	}
	for (size_t i = 0; !e && i < AGENT_MAX_PIN_CACHE; i++)
		if (!pc.e[i].used)
			e = &pc.e[i];
	if (e) {
		e->used = true;
		e->gen = ++pc.gen;
		snprintf(e->serial, sizeof(e->serial), "%s", tok->serial);
		snprintf(e->label, sizeof(e->label), "%s", tok->label);
		snprintf(e->manufacturer, sizeof(e->manufacturer), "%s", tok->manufacturer);
		snprintf(e->model, sizeof(e->model), "%s", tok->model);
		memcpy(e->pin, pin, strlen(pin) + 1);
		clock_gettime(CLOCK_MONOTONIC, &e->expires);
		e->expires.tv_sec += secs;
		pthread_cond_broadcast(&pc.cv);
	}
	pthread_mutex_unlock(&pc.mu);
	if (replaced)
		end_logins(pc.p11, &d, 1);
}

void agent_pincache_forget(const struct fp11_token_info *tok)
{
	struct pc_entry *e;
	struct pc_dropped d;

	pthread_mutex_lock(&pc.mu);
	e = find(tok);
	if (e)
		drop(e, &d);
	pthread_mutex_unlock(&pc.mu);
	if (e)
		end_logins(pc.p11, &d, 1);
}

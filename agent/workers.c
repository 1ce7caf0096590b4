/*
 * Per-token workers with deadlines (agent/workers.h).
 *
 * One mutex (wlock) guards every worker and call; it is never held while a
 * call's function runs, so a hung token holds nothing the others need.
 * Each caller sleeps on its own call's condition variable (CLOCK_MONOTONIC),
 * so a call on one token never wakes the callers of the others.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/util.h"
#include "workers.h"

enum call_state { CALL_QUEUED, CALL_RUNNING, CALL_DONE };

struct call {
	agent_token_fn fn;
	void *arg;
	void (*free_arg)(void *);
	int rc;
	enum call_state state;
	bool abandoned;       /* the caller left; the worker owns the call */
	bool in_dialog;       /* the deadline is stopped */
	struct timespec deadline;
	pthread_cond_t cond;  /* the caller waits on its own call only */
	struct call *next;
};

struct worker {
	char manufacturer[33], model[17], serial[17], label[33];
	pthread_cond_t wake;
	struct call *head, *tail;
	size_t queued;
	bool detached;        /* abandoned: out of the table, exits when done */
};

static pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_condattr_t cond_attr; /* CLOCK_MONOTONIC, for every call's cond */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool cond_ok;
static struct worker *table[AGENT_MAX_WORKERS];
static long timeout_s = AGENT_DEFAULT_TOKEN_TIMEOUT;
static unsigned long abandoned_total;
static unsigned hung_now;
static _Thread_local struct call *current;

static void init_once(void)
{
	if (pthread_condattr_init(&cond_attr) != 0)
		return;
	if (pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC) == 0)
		cond_ok = true;
}

void agent_workers_set_timeout(long seconds)
{
	if (seconds < 1)
		seconds = 1;
	if (seconds > AGENT_MAX_TOKEN_TIMEOUT)
		seconds = AGENT_MAX_TOKEN_TIMEOUT;
	pthread_mutex_lock(&wlock);
	timeout_s = seconds;
	pthread_mutex_unlock(&wlock);
}

void agent_workers_stats(unsigned long *total, unsigned *now)
{
	pthread_mutex_lock(&wlock);
	if (total)
		*total = abandoned_total;
	if (now)
		*now = hung_now;
	pthread_mutex_unlock(&wlock);
}

/* Caller holds wlock. */
static void set_deadline(struct call *c)
{
	clock_gettime(CLOCK_MONOTONIC, &c->deadline);
	c->deadline.tv_sec += timeout_s;
}

static void *worker_main(void *p)
{
	struct worker *w = p;

	pthread_mutex_lock(&wlock);
	for (;;) {
		while (!w->head && !w->detached)
			pthread_cond_wait(&w->wake, &wlock);
		if (!w->head)
			break; /* detached and nothing left */
		struct call *c = w->head;
		w->head = c->next;
		if (!w->head)
			w->tail = NULL;
		w->queued--;
		c->state = CALL_RUNNING;
		set_deadline(c);
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&wlock);

		current = c;
		int rc = c->fn(c->arg);
		current = NULL;

		pthread_mutex_lock(&wlock);
		c->rc = rc;
		c->state = CALL_DONE;
		if (c->abandoned) {
			agent_log("token \"%s\" (serial %s) answered an abandoned call at last (%s)",
				  w->label, w->serial, firmante_err_code(rc));
			if (c->free_arg)
				c->free_arg(c->arg);
			pthread_cond_destroy(&c->cond);
			free(c);
		} else {
			pthread_cond_signal(&c->cond);
		}
	}
	hung_now--;
	pthread_mutex_unlock(&wlock);
	pthread_cond_destroy(&w->wake);
	free(w);
	return NULL;
}

/* The live worker of @tok, created when needed. Caller holds wlock. */
static int worker_for(const struct fp11_token_info *tok, struct worker **out)
{
	struct worker *w;
	size_t free_i = AGENT_MAX_WORKERS;
	pthread_attr_t attr;
	pthread_t th;

	for (size_t i = 0; i < AGENT_MAX_WORKERS; i++) {
		w = table[i];
		if (!w) {
			if (free_i == AGENT_MAX_WORKERS)
				free_i = i;
			continue;
		}
		if (!strcmp(w->manufacturer, tok->manufacturer) && !strcmp(w->model, tok->model) &&
		    !strcmp(w->serial, tok->serial) && !strcmp(w->label, tok->label)) {
			*out = w;
			return 0;
		}
	}
	if (free_i == AGENT_MAX_WORKERS)
		return FIRMANTE_E_TOKEN;
	w = calloc(1, sizeof(*w));
	if (!w)
		return FIRMANTE_E_NOMEM;
	snprintf(w->manufacturer, sizeof(w->manufacturer), "%s", tok->manufacturer);
	snprintf(w->model, sizeof(w->model), "%s", tok->model);
	snprintf(w->serial, sizeof(w->serial), "%s", tok->serial);
	snprintf(w->label, sizeof(w->label), "%s", tok->label);
	if (pthread_cond_init(&w->wake, NULL) != 0) {
		free(w);
		return FIRMANTE_E_INTERNAL;
	}
	if (pthread_attr_init(&attr) != 0) {
		pthread_cond_destroy(&w->wake);
		free(w);
		return FIRMANTE_E_INTERNAL;
	}
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int e = pthread_create(&th, &attr, worker_main, w);
	pthread_attr_destroy(&attr);
	if (e != 0) {
		pthread_cond_destroy(&w->wake);
		free(w);
		return FIRMANTE_E_INTERNAL;
	}
	table[free_i] = w;
	*out = w;
	return 0;
}

/* The running call @c of worker @w passed its deadline. Caller holds wlock. */
static void abandon(struct worker *w, struct call *c)
{
	c->abandoned = true;
	for (size_t i = 0; i < AGENT_MAX_WORKERS; i++)
		if (table[i] == w)
			table[i] = NULL;
	/* Calls queued behind it would wait for the same hung token. */
	for (struct call *q = w->head; q; q = q->next) {
		q->rc = FIRMANTE_E_TOKEN_TIMEOUT;
		q->state = CALL_DONE;
		pthread_cond_signal(&q->cond);
	}
	w->head = w->tail = NULL;
	w->queued = 0;
	w->detached = true;
	abandoned_total++;
	hung_now++;
	agent_log("token \"%s\" (serial %s) did not answer within %ld s; its call was abandoned "
		  "(%u token call(s) still hung)",
		  w->label, w->serial, timeout_s, hung_now);
}

int agent_token_call(const struct fp11_token_info *tok, agent_token_fn fn, void *arg,
		     void (*free_arg)(void *))
{
	struct worker *w = NULL;
	struct call *c = NULL;
	bool give;
	int rc;

	if (!tok || !fn)
		return FIRMANTE_E_BAD_REQUEST;
	pthread_once(&once, init_once);
	if (!cond_ok)
		return FIRMANTE_E_INTERNAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return FIRMANTE_E_NOMEM;
	if (pthread_cond_init(&c->cond, &cond_attr) != 0) {
		free(c);
		return FIRMANTE_E_INTERNAL;
	}
	c->fn = fn;
	c->arg = arg;
	c->free_arg = free_arg;
	c->state = CALL_QUEUED;

	pthread_mutex_lock(&wlock);
	if (hung_now >= AGENT_MAX_ABANDONED) {
		rc = FIRMANTE_E_TOKEN_TIMEOUT;
		goto out;
	}
	rc = worker_for(tok, &w);
	if (rc)
		goto out;
	if (w->queued >= AGENT_MAX_QUEUED) {
		rc = FIRMANTE_E_TOKEN;
		goto out;
	}
	if (w->tail)
		w->tail->next = c;
	else
		w->head = c;
	w->tail = c;
	w->queued++;
	pthread_cond_signal(&w->wake);

	while (c->state != CALL_DONE) {
		if (c->state == CALL_RUNNING && !c->in_dialog) {
			int e = pthread_cond_timedwait(&c->cond, &wlock, &c->deadline);
			if (e == ETIMEDOUT && c->state == CALL_RUNNING && !c->in_dialog) {
				struct timespec now;
				clock_gettime(CLOCK_MONOTONIC, &now);
				if (now.tv_sec > c->deadline.tv_sec ||
				    (now.tv_sec == c->deadline.tv_sec &&
				     now.tv_nsec >= c->deadline.tv_nsec)) {
					abandon(w, c);
					c = NULL; /* the worker owns it now */
					rc = FIRMANTE_E_TOKEN_TIMEOUT;
					goto out;
				}
			}
		} else {
			pthread_cond_wait(&c->cond, &wlock);
		}
	}
	rc = c->rc;
out:
	/* On a timeout the caller no longer owns @arg (workers.h). */
	give = rc == FIRMANTE_E_TOKEN_TIMEOUT && c != NULL;
	pthread_mutex_unlock(&wlock);
	if (give && free_arg)
		free_arg(arg);
	if (c)
		pthread_cond_destroy(&c->cond);
	free(c);
	return rc;
}

int agent_worker_dialog_begin(void)
{
	int rc = 0;

	pthread_mutex_lock(&wlock);
	if (current) {
		if (current->abandoned)
			rc = FIRMANTE_E_TOKEN_TIMEOUT;
		else
			current->in_dialog = true;
	}
	pthread_mutex_unlock(&wlock);
	return rc;
}

void agent_worker_dialog_end(void)
{
	pthread_mutex_lock(&wlock);
	if (current) {
		current->in_dialog = false;
		set_deadline(current);
		pthread_cond_signal(&current->cond);
	}
	pthread_mutex_unlock(&wlock);
}

/* ------------------------------------------------------------------ */
/* fp11_sign on the worker */

struct sign_arg {
	fp11_ctx *ctx;
	struct fp11_identity id;   /* cert_der owned */
	char owner[FP11_OWNER_MAX]; /* "" : no kept login */
	fp11_pin_cb pin_cb;
	void *pin_cb_data;
	bool allow_final_try;
	uint8_t *data;
	size_t len;
	uint8_t sig[1024];
	size_t sig_len;
};

static void sign_arg_free(void *p)
{
	struct sign_arg *a = p;

	if (!a)
		return;
	free(a->id.cert_der);
	fm_wipe(a->sig, sizeof(a->sig));
	free(a->data);
	free(a);
}

static int sign_pin(void *data, const struct fp11_token_info *tok, bool context_specific,
		    char *pin, size_t pin_size)
{
	struct sign_arg *a = data;
	int rc = agent_worker_dialog_begin();

	if (rc)
		return rc;
	rc = a->pin_cb(a->pin_cb_data, tok, context_specific, pin, pin_size);
	agent_worker_dialog_end();
	return rc;
}

static int sign_run(void *p)
{
	struct sign_arg *a = p;

	return fp11_sign_as(a->ctx, &a->id, a->owner[0] ? a->owner : NULL,
			    a->pin_cb ? sign_pin : NULL, a, a->allow_final_try, a->data, a->len,
			    a->sig, &a->sig_len);
}

int agent_token_sign(fp11_ctx *ctx, const struct fp11_identity *id, fp11_pin_cb pin_cb,
		     void *pin_cb_data, bool allow_final_try, const uint8_t *data, size_t len,
		     uint8_t *sig, size_t *sig_len)
{
	return agent_token_sign_as(ctx, id, NULL, pin_cb, pin_cb_data, allow_final_try, data, len,
				   sig, sig_len);
}

int agent_token_sign_as(fp11_ctx *ctx, const struct fp11_identity *id, const char *login_owner,
			fp11_pin_cb pin_cb, void *pin_cb_data, bool allow_final_try,
			const uint8_t *data, size_t len, uint8_t *sig, size_t *sig_len)
{
	struct sign_arg *a = NULL;
	int rc;

	if (!ctx || !id || !sig || !sig_len || (!data && len))
		return FIRMANTE_E_BAD_REQUEST;
	if (login_owner && (!login_owner[0] || strlen(login_owner) >= FP11_OWNER_MAX))
		return FIRMANTE_E_BAD_REQUEST;
	a = calloc(1, sizeof(*a));
	if (!a)
		return FIRMANTE_E_NOMEM;
	if (login_owner)
		memcpy(a->owner, login_owner, strlen(login_owner) + 1);
	a->ctx = ctx;
	a->id = *id;
	a->id.cert_der = NULL;
	if (id->cert_der && id->cert_len) {
		a->id.cert_der = malloc(id->cert_len);
		if (!a->id.cert_der) {
			rc = FIRMANTE_E_NOMEM;
			goto out;
		}
		memcpy(a->id.cert_der, id->cert_der, id->cert_len);
	}
	a->data = malloc(len ? len : 1);
	if (!a->data) {
		rc = FIRMANTE_E_NOMEM;
		goto out;
	}
	if (len)
		memcpy(a->data, data, len);
	a->len = len;
	a->pin_cb = pin_cb;
	a->pin_cb_data = pin_cb_data;
	a->allow_final_try = allow_final_try;
	a->sig_len = *sig_len < sizeof(a->sig) ? *sig_len : sizeof(a->sig);

	rc = agent_token_call(&id->token, sign_run, a, sign_arg_free);
	if (rc == FIRMANTE_E_TOKEN_TIMEOUT) {
		a = NULL; /* the worker may still own it */
		goto out;
	}
	if (rc == 0) {
		memcpy(sig, a->sig, a->sig_len);
		*sig_len = a->sig_len;
	}
out:
	sign_arg_free(a);
	return rc;
}

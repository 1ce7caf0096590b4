/*
 * firmanted: the approval queue (configuration "approval = queue").
 * A signature request waits here, with everything the holder needs to
 * judge it, until `firmante approve` decides (GET/POST /v1/requests), the
 * approval timeout passes, or the requesting client goes away.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "agent.h"
#include "firmante/protocol.h"
#include "firmante/satcert.h"

enum pstate { P_WAITING, P_APPROVED, P_DENIED, P_CANCELLED };

struct pending {
	unsigned long id;
	json_t *content;
	enum pstate state;
	struct pending *next;
};

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond;
static pthread_once_t qonce = PTHREAD_ONCE_INIT;
static struct pending *qhead;
static size_t qcount;
static unsigned long qnext = 1;
static bool qclosed;

static void qinit(void)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&qcond, &a);
	pthread_condattr_destroy(&a);
}

/* The client gave up (closed its connection)? */
static bool client_gone(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLRDHUP };

	if (fd < 0)
		return false;
	if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		return true;
	return false;
}

json_t *agent_approval_content(const struct agent_approval *ap)
{
	const struct fp11_identity *id = ap->identity;
	const struct agent_caller *c = ap->caller;
	char until[32];
	json_t *o, *caller;

	if (c->origin[0])
		caller = json_pack("{s:s}", "origin", c->origin);
	else
		caller = json_pack("{s:I, s:I, s:s}", "uid", (json_int_t)c->uid, "pid",
				   (json_int_t)c->pid, "exe", c->exe);
	o = json_pack("{s:o, s:{s:s, s:s, s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}}",
		      "caller", caller,
		      "certificate", "name", id->cert.subject_cn, "curp", id->cert.curp,
		      "no_certificado", id->cert.no_certificado, "not_after",
		      fm_time_iso8601(id->cert.not_after, until, sizeof(until)), "token",
		      id->token.label,
		      "title", "folioControl", ap->folio_control ? ap->folio_control : "",
		      "graduate", ap->graduate_name ? ap->graduate_name : "",
		      "graduate_curp", ap->graduate_curp ? ap->graduate_curp : "",
		      "career", ap->nombre_carrera ? ap->nombre_carrera : "",
		      "fechaExpedicion", ap->fecha_expedicion ? ap->fecha_expedicion : "",
		      "institution", ap->nombre_institucion ? ap->nombre_institucion : "",
		      "cargo", ap->cargo ? ap->cargo : "");
	if (o && (id->token.user_pin_final_try || id->token.user_pin_count_low))
		json_object_set_new(o, "warning",
				    json_string(id->token.user_pin_final_try
						? "the token allows ONE more PIN try; a wrong PIN locks it"
						: "a wrong PIN was entered before; few tries are left"));
	return o;
}

int agent_queue_wait(const struct agent_config *cfg, json_t *content, int client_fd,
		     const char **decision, char *detail, size_t detail_size)
{
	struct pending *p = NULL, **pp;
	struct timespec deadline, now;
	char stamp[32];
	struct tm tm;
	time_t t = time(NULL);
	int rc = 0;

	pthread_once(&qonce, qinit);
	*decision = "not-asked";
	if (!content)
		return FIRMANTE_E_NOMEM;
	p = calloc(1, sizeof(*p));
	if (!p) {
		json_decref(content);
		return FIRMANTE_E_NOMEM;
	}
	p->content = content;
	gmtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(content, "received", json_string(stamp));
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += cfg->approval_timeout;

	pthread_mutex_lock(&qlock);
	if (qclosed || qcount >= AGENT_MAX_PENDING) {
		pthread_mutex_unlock(&qlock);
		snprintf(detail, detail_size, qclosed ? "the agent is shutting down"
			 : "%d requests are already waiting for the holder; try again later",
			 AGENT_MAX_PENDING);
		json_decref(content);
		free(p);
		return qclosed ? FIRMANTE_E_USER_DENIED : FIRMANTE_E_BUSY;
	}
	p->id = qnext++;
	json_object_set_new(content, "request", json_integer((json_int_t)p->id));
	p->next = qhead;
	qhead = p;
	qcount++;
	agent_log("request %lu waits for firmante approve", p->id);
	while (p->state == P_WAITING) {
		struct timespec step;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
		    (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
			break;
		if (client_gone(client_fd)) {
			p->state = P_CANCELLED;
			break;
		}
		/* Wake at least every 200 ms to notice a client that left. */
		step = now;
		step.tv_nsec += 200 * 1000 * 1000;
		if (step.tv_nsec >= 1000000000L) {
			step.tv_sec++;
			step.tv_nsec -= 1000000000L;
		}
		if (step.tv_sec > deadline.tv_sec ||
		    (step.tv_sec == deadline.tv_sec && step.tv_nsec > deadline.tv_nsec))
			step = deadline;
		pthread_cond_timedwait(&qcond, &qlock, &step);
	}
	for (pp = &qhead; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	qcount--;
	switch (p->state) {
	case P_APPROVED:
		*decision = "approved";
		break;
	case P_DENIED:
		*decision = "denied";
		snprintf(detail, detail_size, "the holder refused (firmante approve --deny)");
		rc = FIRMANTE_E_USER_DENIED;
		break;
	case P_CANCELLED:
		*decision = "cancelled";
		snprintf(detail, detail_size, "the request was cancelled before the holder decided");
		rc = FIRMANTE_E_USER_DENIED;
		break;
	default:
		*decision = "timeout";
		snprintf(detail, detail_size, "no answer in %ld s", cfg->approval_timeout);
		rc = FIRMANTE_E_USER_DENIED;
		break;
	}
	pthread_mutex_unlock(&qlock);
	json_decref(p->content);
	free(p);
	return rc;
}

json_t *agent_queue_list(void)
{
	json_t *arr = json_array();

	pthread_once(&qonce, qinit);
	if (!arr)
		return NULL;
	pthread_mutex_lock(&qlock);
	/* Oldest first (the list is newest first). */
	for (struct pending *p = qhead; p; p = p->next)
		if (p->state == P_WAITING)
			json_array_insert(arr, 0, p->content);
	pthread_mutex_unlock(&qlock);
	return arr;
}

int agent_queue_decide(unsigned long id, bool all, bool approve, size_t *count)
{
	size_t n = 0;

	pthread_once(&qonce, qinit);
	pthread_mutex_lock(&qlock);
	for (struct pending *p = qhead; p; p = p->next) {
		if (p->state != P_WAITING || (!all && p->id != id))
			continue;
		p->state = approve ? P_APPROVED : P_DENIED;
		n++;
	}
	pthread_cond_broadcast(&qcond);
	pthread_mutex_unlock(&qlock);
	*count = n;
	return n || all ? 0 : FIRMANTE_E_NOT_FOUND;
}

void agent_queue_close(void)
{
	pthread_once(&qonce, qinit);
	pthread_mutex_lock(&qlock);
	qclosed = true;
	for (struct pending *p = qhead; p; p = p->next)
		if (p->state == P_WAITING)
			p->state = P_CANCELLED;
	pthread_cond_broadcast(&qcond);
	pthread_mutex_unlock(&qlock);
}

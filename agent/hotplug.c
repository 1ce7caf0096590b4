/*
 * firmanted: tokens arriving and leaving (see hotplug.h).
 *
 * The watcher thread scans the tokens with fp11_list_tokens() (no token
 * lock; a token busy signing is still listed) and compares the result,
 * by serial and label, with the tokens it saw last. With libusb hot-plug
 * events a second thread runs libusb's event loop; a USB arrival or
 * departure starts a short burst of scans, since a PKCS#11 module (or
 * pcscd) needs a moment before the token shows up in its slots; a slow
 * scan every AGENT_HOTPLUG_USB_SAFETY seconds catches tokens that are not
 * USB devices. Without libusb events, the scan runs every poll interval.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libusb.h>

#include "hotplug.h"
#include "firmante/protocol.h"

#define AGENT_HOTPLUG_USB_SAFETY 30   /* seconds between scans in libusb mode */
#define AGENT_HOTPLUG_BURST_MS 5000   /* scans after a USB event last this long */
#define AGENT_HOTPLUG_BURST_STEP_MS 500

struct present_token {
	char label[33];
	char serial[17];
	char manufacturer[33];
	char model[17];
};

struct agent_hotplug {
	fp11_ctx *p11;
	long poll_interval;

	pthread_mutex_t mu;
	pthread_cond_t changed; /* waiters: a new event, a scan done, stop */
	pthread_cond_t wake;    /* the watcher: rescan requested, stop */
	bool stop;
	bool rescan;
	struct timespec burst_until; /* CLOCK_MONOTONIC; scans every step until then */

	struct present_token present[AGENT_HOTPLUG_MAX_TOKENS];
	size_t n_present;
	struct agent_token_event ring[AGENT_HOTPLUG_EVENTS];
	uint64_t seq; /* newest event's sequence number, 0 = none */

	pthread_t watcher;
	bool watcher_started;

	libusb_context *usb;
	libusb_hotplug_callback_handle usb_cb;
	bool usb_cb_registered;
	pthread_t usb_thread;
	bool usb_thread_started;
};

static void mono_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static void add_ms(struct timespec *ts, long ms)
{
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static bool before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static bool same_token(const struct present_token *p, const char *serial, const char *label)
{
	return strcmp(p->serial, serial) == 0 && strcmp(p->label, label) == 0;
}

/* Call with h->mu held. */
static void publish(struct agent_hotplug *h, int kind, const struct present_token *t)
{
	struct agent_token_event *e;

	/* Identities are read again after any arrival or departure (a new
	 * slot id alone is noticed by fp11_list_tokens() itself). */
	fp11_tokens_changed(h->p11);
	h->seq++;
	e = &h->ring[(h->seq - 1) % AGENT_HOTPLUG_EVENTS];
	memset(e, 0, sizeof(*e));
	e->seq = h->seq;
	e->kind = kind;
	e->when = time(NULL);
	memcpy(e->label, t->label, sizeof(e->label));
	memcpy(e->serial, t->serial, sizeof(e->serial));
	memcpy(e->manufacturer, t->manufacturer, sizeof(e->manufacturer));
	memcpy(e->model, t->model, sizeof(e->model));
}

/*
 * One scan: list the tokens and publish the differences. @initial: the
 * first scan at start, which records the tokens without events. A failed
 * listing changes nothing (a module error is not a removal).
 */
static void scan(struct agent_hotplug *h, bool initial)
{
	struct fp11_token_info *toks = NULL;
	struct present_token now[AGENT_HOTPLUG_MAX_TOKENS];
	size_t n = 0, n_now = 0;

	if (fp11_list_tokens(h->p11, &toks, &n) != 0)
		return;
	for (size_t i = 0; i < n && n_now < AGENT_HOTPLUG_MAX_TOKENS; i++) {
		bool dup = false;

		for (size_t j = 0; j < n_now && !dup; j++)
			dup = same_token(&now[j], toks[i].serial, toks[i].label);
		if (dup)
			continue;
		memcpy(now[n_now].label, toks[i].label, sizeof(now[n_now].label));
		memcpy(now[n_now].serial, toks[i].serial, sizeof(now[n_now].serial));
		memcpy(now[n_now].manufacturer, toks[i].manufacturer,
		       sizeof(now[n_now].manufacturer));
		memcpy(now[n_now].model, toks[i].model, sizeof(now[n_now].model));
		n_now++;
	}
	free(toks);

	pthread_mutex_lock(&h->mu);
	if (!initial) {
		for (size_t i = 0; i < h->n_present; i++) {
			bool still = false;

			for (size_t j = 0; j < n_now && !still; j++)
				still = same_token(&now[j], h->present[i].serial, h->present[i].label);
			if (!still)
				publish(h, AGENT_TOKEN_REMOVED, &h->present[i]);
		}
		for (size_t j = 0; j < n_now; j++) {
			bool known = false;

			for (size_t i = 0; i < h->n_present && !known; i++)
				known = same_token(&h->present[i], now[j].serial, now[j].label);
			if (!known)
				publish(h, AGENT_TOKEN_ARRIVED, &now[j]);
		}
	}
	memcpy(h->present, now, n_now * sizeof(now[0]));
	h->n_present = n_now;
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->mu);
}

static void *watcher_main(void *arg)
{
	struct agent_hotplug *h = arg;
	struct timespec next, now;

	pthread_mutex_lock(&h->mu);
	while (!h->stop) {
		mono_now(&now);
		next = now;
		if (before(&now, &h->burst_until))
			add_ms(&next, AGENT_HOTPLUG_BURST_STEP_MS);
		else
			add_ms(&next, (h->usb_cb_registered ? AGENT_HOTPLUG_USB_SAFETY
							     : h->poll_interval) * 1000L);
		while (!h->stop && !h->rescan) {
			if (pthread_cond_timedwait(&h->wake, &h->mu, &next) == ETIMEDOUT)
				break;
		}
		if (h->stop)
			break;
		h->rescan = false;
		pthread_mutex_unlock(&h->mu);
		scan(h, false);
		pthread_mutex_lock(&h->mu);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static int LIBUSB_CALL usb_event(libusb_context *ctx, libusb_device *dev,
				 libusb_hotplug_event event, void *arg)
{
	struct agent_hotplug *h = arg;

	(void)ctx;
	(void)dev;
	(void)event;
	pthread_mutex_lock(&h->mu);
	mono_now(&h->burst_until);
	add_ms(&h->burst_until, AGENT_HOTPLUG_BURST_MS);
	h->rescan = true;
	pthread_cond_signal(&h->wake);
	pthread_mutex_unlock(&h->mu);
	return 0; /* keep the callback */
}

static void *usb_main(void *arg)
{
	struct agent_hotplug *h = arg;
	struct timeval tv = { 1, 0 };

	for (;;) {
		bool stop;

		pthread_mutex_lock(&h->mu);
		stop = h->stop;
		pthread_mutex_unlock(&h->mu);
		if (stop)
			break;
		libusb_handle_events_timeout_completed(h->usb, &tv, NULL);
	}
	return NULL;
}

/* libusb hot-plug events when the platform has them and a USB bus exists. */
static void try_usb(struct agent_hotplug *h)
{
	libusb_device **list = NULL;
	ssize_t nd;

	if (libusb_init(&h->usb) != 0) {
		h->usb = NULL;
		return;
	}
	if (!libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG))
		goto no;
	nd = libusb_get_device_list(h->usb, &list);
	if (list)
		libusb_free_device_list(list, 1);
	if (nd <= 0) /* no USB bus (containers, some virtual machines) */
		goto no;
	if (libusb_hotplug_register_callback(h->usb,
					     LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED |
						     LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
					     0, LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY,
					     LIBUSB_HOTPLUG_MATCH_ANY, usb_event, h,
					     &h->usb_cb) != LIBUSB_SUCCESS)
		goto no;
	h->usb_cb_registered = true;
	if (pthread_create(&h->usb_thread, NULL, usb_main, h) != 0) {
		libusb_hotplug_deregister_callback(h->usb, h->usb_cb);
		h->usb_cb_registered = false;
		goto no;
	}
	h->usb_thread_started = true;
	return;
no:
	libusb_exit(h->usb);
	h->usb = NULL;
}

void agent_hotplug_stop(struct agent_hotplug *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stop = true;
	pthread_cond_broadcast(&h->wake);
	pthread_cond_broadcast(&h->changed);
	pthread_mutex_unlock(&h->mu);
	if (h->watcher_started) {
		pthread_join(h->watcher, NULL);
		h->watcher_started = false;
	}
	if (h->usb_cb_registered) {
		libusb_hotplug_deregister_callback(h->usb, h->usb_cb);
		h->usb_cb_registered = false;
	}
	if (h->usb_thread_started) {
		libusb_interrupt_event_handler(h->usb);
		pthread_join(h->usb_thread, NULL);
		h->usb_thread_started = false;
	}
}

void agent_hotplug_free(struct agent_hotplug *h)
{
	if (!h)
		return;
	agent_hotplug_stop(h);
	if (h->usb)
		libusb_exit(h->usb);
	pthread_cond_destroy(&h->wake);
	pthread_cond_destroy(&h->changed);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

int agent_hotplug_start(fp11_ctx *p11, long poll_interval, bool use_usb,
			struct agent_hotplug **out)
{
	struct agent_hotplug *h;
	pthread_condattr_t ca;

	if (!p11 || !out || poll_interval < 1 || poll_interval > AGENT_POLL_INTERVAL_MAX)
		return FIRMANTE_E_CONFIG;
	h = calloc(1, sizeof(*h));
	if (!h)
		return FIRMANTE_E_NOMEM;
	h->p11 = p11;
	h->poll_interval = poll_interval;
	pthread_mutex_init(&h->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->changed, &ca);
	pthread_cond_init(&h->wake, &ca);
	pthread_condattr_destroy(&ca);
	scan(h, true);
	if (use_usb)
		try_usb(h);
	if (pthread_create(&h->watcher, NULL, watcher_main, h) != 0) {
		agent_hotplug_free(h);
		return FIRMANTE_E_INTERNAL;
	}
	h->watcher_started = true;
	*out = h;
	return 0;
}

const char *agent_hotplug_method(const struct agent_hotplug *h)
{
	return h && h->usb_cb_registered ? "libusb" : "poll";
}

bool agent_hotplug_stopping(struct agent_hotplug *h)
{
	bool stop;

	if (!h)
		return true;
	pthread_mutex_lock(&h->mu);
	stop = h->stop;
	pthread_mutex_unlock(&h->mu);
	return stop;
}

void agent_hotplug_rescan(struct agent_hotplug *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->rescan = true;
	pthread_cond_signal(&h->wake);
	pthread_mutex_unlock(&h->mu);
}

int agent_hotplug_events(struct agent_hotplug *h, uint64_t since, long timeout,
			 struct agent_token_event *out, size_t max, size_t *n, uint64_t *last,
			 uint64_t *lost)
{
	struct timespec deadline;
	uint64_t first, oldest;
	size_t k = 0;

	if (!h || !n || !last || !lost || (max && !out))
		return FIRMANTE_E_INTERNAL;
	if (timeout < 0)
		timeout = 0;
	if (timeout > AGENT_HOTPLUG_MAX_WAIT)
		timeout = AGENT_HOTPLUG_MAX_WAIT;
	mono_now(&deadline);
	deadline.tv_sec += timeout;
	pthread_mutex_lock(&h->mu);
	while (h->seq <= since && !h->stop && timeout > 0) {
		if (pthread_cond_timedwait(&h->changed, &h->mu, &deadline) == ETIMEDOUT)
			break;
	}
	oldest = h->seq > AGENT_HOTPLUG_EVENTS ? h->seq - AGENT_HOTPLUG_EVENTS + 1 : 1;
	first = since + 1 > oldest ? since + 1 : oldest;
	*lost = first > since + 1 ? first - (since + 1) : 0;
	for (uint64_t s = first; s <= h->seq && k < max; s++)
		out[k++] = h->ring[(s - 1) % AGENT_HOTPLUG_EVENTS];
	*n = k;
	*last = k ? out[k - 1].seq : h->seq;
	pthread_mutex_unlock(&h->mu);
	return 0;
}

int agent_hotplug_present(struct agent_hotplug *h, struct fp11_token_info *out, size_t max,
			  size_t *n)
{
	size_t k = 0;

	if (!h || !n || (max && !out))
		return FIRMANTE_E_INTERNAL;
	pthread_mutex_lock(&h->mu);
	for (; k < h->n_present && k < max; k++) {
		memset(&out[k], 0, sizeof(out[k]));
		memcpy(out[k].label, h->present[k].label, sizeof(out[k].label));
		memcpy(out[k].serial, h->present[k].serial, sizeof(out[k].serial));
		memcpy(out[k].manufacturer, h->present[k].manufacturer,
		       sizeof(out[k].manufacturer));
		memcpy(out[k].model, h->present[k].model, sizeof(out[k].model));
	}
	*n = k;
	pthread_mutex_unlock(&h->mu);
	return 0;
}

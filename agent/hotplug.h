/*
 * firmanted: tokens arriving and leaving (agent/hotplug.c).
 *
 * One thread watches the tokens: with libusb hot-plug events when the
 * platform delivers them (libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG)
 * and a USB bus is present), each USB arrival or departure triggers a
 * rescan of the tokens; otherwise the tokens are rescanned every
 * token-poll-interval seconds (C_GetSlotList through fp11_list_tokens).
 * Tokens are identified by serial and label (never by slot id), so a token
 * put back into another port is the same token. Each change becomes an
 * event with a sequence number, kept in a ring of AGENT_HOTPLUG_EVENTS;
 * GET /v1/events hands them out (long-poll).
 */
#ifndef FIRMANTE_AGENT_HOTPLUG_H
#define FIRMANTE_AGENT_HOTPLUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "firmante/token.h"

#define AGENT_HOTPLUG_EVENTS 256       /* events kept for GET /v1/events */
#define AGENT_HOTPLUG_MAX_TOKENS 64    /* tokens tracked at once */
#define AGENT_HOTPLUG_MAX_WAIT 60      /* seconds a long-poll may wait */
#define AGENT_POLL_INTERVAL_DEFAULT 2  /* token-poll-interval, seconds */
#define AGENT_POLL_INTERVAL_MAX 3600
#define AGENT_BATCH_PAUSE_DEFAULT 600  /* batch-pause-timeout, seconds (10 min) */
#define AGENT_BATCH_PAUSE_MAX 86400
#define AGENT_BATCH_MAX_PAUSES 16      /* pauses one batch may go through */

enum agent_token_event_kind {
	AGENT_TOKEN_ARRIVED = 1,
	AGENT_TOKEN_REMOVED = 2,
};

struct agent_token_event {
	uint64_t seq;            /* 1, 2, ... in order */
	int kind;                /* enum agent_token_event_kind */
	time_t when;             /* UTC */
	char label[33];
	char serial[17];
	char manufacturer[33];
	char model[17];
};

struct agent_hotplug;

/*
 * agent_hotplug_start - scan the tokens once (the tokens present at start
 * are not events) and start the watching thread.
 * @p11: the agent's token context; must outlive the watcher.
 * @poll_interval: seconds between scans when there are no USB events (1..3600).
 * @use_usb: try libusb hot-plug events first (false: always poll).
 * @out: written on success; stop with agent_hotplug_stop(), then
 *       agent_hotplug_free().
 * Returns 0, FIRMANTE_E_NOMEM, FIRMANTE_E_INTERNAL (thread), FIRMANTE_E_CONFIG.
 */
int agent_hotplug_start(fp11_ctx *p11, long poll_interval, bool use_usb,
			struct agent_hotplug **out);

/*
 * agent_hotplug_stop - stop the threads and wake every waiter (long-polls
 * and paused batches return at once). The object stays valid for calls in
 * flight; free it with agent_hotplug_free() once no request can use it.
 * NULL is a no-op.
 */
void agent_hotplug_stop(struct agent_hotplug *h);

/* agent_hotplug_free - stop (if still running) and free. NULL is a no-op. */
void agent_hotplug_free(struct agent_hotplug *h);

/* agent_hotplug_method - "libusb" or "poll" (for logs and GET /v1/events). */
const char *agent_hotplug_method(const struct agent_hotplug *h);

/*
 * agent_hotplug_events - the events after @since, waiting up to @timeout
 * seconds (0..AGENT_HOTPLUG_MAX_WAIT) for one when there is none yet.
 * @out: room for @max events; *@n: how many were written (oldest first).
 * *@last: the newest sequence number so far (0 when none), for the next
 * call's @since. *@lost: events after @since that fell out of the ring.
 * Returns 0, FIRMANTE_E_INTERNAL (NULL argument). A stop ends the wait.
 */
int agent_hotplug_events(struct agent_hotplug *h, uint64_t since, long timeout,
			 struct agent_token_event *out, size_t max, size_t *n, uint64_t *last,
			 uint64_t *lost);

/*
 * agent_hotplug_present - the tokens present after the last scan.
 * @out: room for @max entries (label, serial, manufacturer, model filled;
 * other fields zero); *@n: how many. Returns 0 or FIRMANTE_E_INTERNAL.
 */
int agent_hotplug_present(struct agent_hotplug *h, struct fp11_token_info *out, size_t max,
			  size_t *n);

/* agent_hotplug_stopping - true once agent_hotplug_stop() began (NULL: true). */
bool agent_hotplug_stopping(struct agent_hotplug *h);

/* agent_hotplug_rescan - ask the thread for a scan now (e.g. after token-removed). */
void agent_hotplug_rescan(struct agent_hotplug *h);

#endif

/*
 * firmanted's browser listener (agent/http.c, agent_http_start_browser) as
 * a web page's requests reach it on 127.0.0.1: the same harness and
 * properties as fuzz_agent_http.c, over TCP, with one paired origin
 * (https://registro.uvc.edu.mx, token "a" x 64). Inputs write the
 * listener's port as "@@@@@" (Host header); a holder dialog (pairing)
 * fails at once.
 */
#define FUZZ_BROWSER 1
#include "fuzz_agent_http.c"

/*
 * Tests of the p11shim PKCS#11 test module: forwarding to SoftHSM2, every
 * control-file fault, and the call log. The shim is loaded with dlopen and
 * driven through its raw CK_FUNCTION_LIST, on a token made for the run with
 * tests/tools/fm-testtoken.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <p11-kit/pkcs11.h>

#ifndef P11SHIM_PATH
#error "P11SHIM_PATH must name the built shim module"
#endif

extern char **environ;

#define TOKEN_LABEL "p11shim-test"
#define USER_PIN    "837261"
#define SO_PIN      "918273"

static char tmpdir[] = "/tmp/p11shim-test-XXXXXX";
static char control_file[512];
static char log_file[512];
static CK_FUNCTION_LIST *p11;

/* ---------------------------------------------------------------------- */
/* Helpers */

static int run_tool(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st = 0, rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -1;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Replaces the control file atomically (temporary file + rename). */
static void control(const char *text)
{
	char tmp[600];
	FILE *f;

	snprintf(tmp, sizeof tmp, "%s.tmp", control_file);
	f = fopen(tmp, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, control_file), 0);
}

/* The whole call log as a string (caller frees). */
static char *read_log(void)
{
	FILE *f = fopen(log_file, "r");
	char *buf = calloc(1, 1 << 20);
	size_t n = 0;

	assert_non_null(buf);
	if (f) {
		n = fread(buf, 1, (1 << 20) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

/* Number of log lines equal to "line". */
static int log_count(const char *line)
{
	char *buf = read_log();
	size_t len = strlen(line);
	int count = 0;

	for (char *p = buf; *p;) {
		char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		if (l == len && !memcmp(p, line, len))
			count++;
		p += l + (nl ? 1 : 0);
	}
	free(buf);
	return count;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int slot_list(CK_BBOOL present, CK_SLOT_ID *slots, CK_ULONG cap, CK_ULONG *n)
{
	*n = cap;
	return (int)p11->C_GetSlotList(present, slots, n);
}

static CK_SLOT_ID token_slot(void)
{
	CK_SLOT_ID slots[16];
	CK_ULONG n;

	assert_int_equal(slot_list(CK_TRUE, slots, 16, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (!memcmp(ti.label, TOKEN_LABEL, strlen(TOKEN_LABEL)) &&
		    ti.label[strlen(TOKEN_LABEL)] == ' ')
			return slots[i];
	}
	fail_msg("token %s not found", TOKEN_LABEL);
	return 0;
}

static CK_SESSION_HANDLE open_session(CK_SLOT_ID slot)
{
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	assert_int_equal(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
					    NULL, NULL, &h), CKR_OK);
	return h;
}

static CK_RV login(CK_SESSION_HANDLE h)
{
	return p11->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN));
}

static CK_SESSION_HANDLE open_login(CK_SLOT_ID slot)
{
	CK_SESSION_HANDLE h = open_session(slot);
	assert_int_equal(login(h), CKR_OK);
	return h;
}

static CK_RV find_key(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *key)
{
	CK_BYTE id[] = { 0x01 };
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof cls },
		{ CKA_ID, id, sizeof id },
	};
	CK_ULONG n = 0;
	CK_RV rv;

	rv = p11->C_FindObjectsInit(h, t, 2);
	if (rv != CKR_OK)
		return rv;
	rv = p11->C_FindObjects(h, key, 1, &n);
	p11->C_FindObjectsFinal(h);
	if (rv == CKR_OK && n != 1)
		rv = CKR_OBJECT_HANDLE_INVALID;
	return rv;
}

static CK_RV sign(CK_SESSION_HANDLE h, CK_MECHANISM_TYPE mt, const void *data, size_t len,
		  CK_BYTE *sig, CK_ULONG *sig_len)
{
	CK_MECHANISM m = { mt, NULL, 0 };
	CK_OBJECT_HANDLE key;
	CK_RV rv;

	rv = find_key(h, CKO_PRIVATE_KEY, &key);
	if (rv != CKR_OK)
		return rv;
	rv = p11->C_SignInit(h, &m, key);
	if (rv != CKR_OK)
		return rv;
	*sig_len = 512;
	return p11->C_Sign(h, (CK_BYTE_PTR)data, len, sig, sig_len);
}

static CK_STATE session_state(CK_SESSION_HANDLE h)
{
	CK_SESSION_INFO si;
	assert_int_equal(p11->C_GetSessionInfo(h, &si), CKR_OK);
	return si.state;
}

static const char message[] = "cadena original de prueba";

/* ---------------------------------------------------------------------- */
/* Fixtures */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static int group_setup(void **state)
{
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	char conf[600];
	void *lib;

	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	char *init[] = { FIRMANTE_SOURCE_DIR "/tests/tools/fm-testtoken", "init",
			 "--dir", tmpdir, "--label", TOKEN_LABEL, "--pin", USER_PIN,
			 "--so-pin", SO_PIN, NULL };
	char *signer[] = { FIRMANTE_SOURCE_DIR "/tests/tools/fm-testtoken", "signer",
			   "--dir", tmpdir, "--label", TOKEN_LABEL, "--pin", USER_PIN,
			   "--id", "01", "--name", "MARIA PRUEBA SHIM",
			   "--curp", "PUSM800101MDFRRR09", "--rfc", "PUSM800101AB1", NULL };
	if (run_tool(init) != 0 || run_tool(signer) != 0)
		return -1;
	snprintf(conf, sizeof conf, "%s/softhsm2.conf", tmpdir);
	snprintf(control_file, sizeof control_file, "%s/control", tmpdir);
	snprintf(log_file, sizeof log_file, "%s/calls.log", tmpdir);
	setenv("SOFTHSM2_CONF", conf, 1);
	setenv("P11SHIM_CONTROL", control_file, 1);
	setenv("P11SHIM_LOG", log_file, 1);
	unsetenv("P11SHIM_MODULE");

	/* Never dlclose'd: leak reports inside the modules stay attributable. */
	lib = dlopen(P11SHIM_PATH, RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return -1;
	*(void **)&get = dlsym(lib, "C_GetFunctionList");
	if (!get || get(&p11) != CKR_OK || !p11)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
	(void)state;
	control("");
	unlink(log_file);
	return p11->C_Initialize(NULL) == CKR_OK ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	control("");
	return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

/* ---------------------------------------------------------------------- */
/* Tests */

static void test_forwarding(void **state)
{
	CK_INFO info;
	CK_TOKEN_INFO ti;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub;
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_MECHANISM_TYPE mechs[256];
	CK_ULONG n = 256, sig_len;
	CK_BYTE sig[512];
	int found = 0;

	(void)state;
	assert_int_equal(p11->C_GetInfo(&info), CKR_OK);
	slot = token_slot();
	assert_int_equal(p11->C_GetTokenInfo(slot, &ti), CKR_OK);
	assert_true(ti.flags & CKF_TOKEN_INITIALIZED);
	assert_false(ti.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED));
	assert_int_equal(p11->C_GetMechanismList(slot, mechs, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++)
		found += mechs[i] == CKM_SHA256_RSA_PKCS;
	assert_int_equal(found, 1);

	h = open_session(slot);
	assert_int_equal(session_state(h), CKS_RW_PUBLIC_SESSION);
	assert_int_equal(login(h), CKR_OK);
	assert_int_equal(session_state(h), CKS_RW_USER_FUNCTIONS);
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len), CKR_OK);
	assert_int_equal(sig_len, 256);

	assert_int_equal(find_key(h, CKO_PUBLIC_KEY, &pub), CKR_OK);
	assert_int_equal(p11->C_VerifyInit(h, &m, pub), CKR_OK);
	assert_int_equal(p11->C_Verify(h, (CK_BYTE_PTR)message, strlen(message), sig, sig_len), CKR_OK);
	sig[10] ^= 1;
	assert_int_equal(p11->C_VerifyInit(h, &m, pub), CKR_OK);
	assert_int_equal(p11->C_Verify(h, (CK_BYTE_PTR)message, strlen(message), sig, sig_len),
			 CKR_SIGNATURE_INVALID);
	assert_int_equal(p11->C_Logout(h), CKR_OK);
	assert_int_equal(p11->C_CloseSession(h), CKR_OK);
	assert_int_equal(p11->C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
}

static void test_removed_and_reinserted(void **state)
{
	CK_SLOT_ID slot, slots[16], moved;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE h, h2;
	CK_SESSION_INFO sinfo;
	CK_ULONG n, sig_len;
	CK_BYTE sig[512];
	int seen;

	(void)state;
	slot = token_slot();
	h = open_login(slot);

	control("removed=1\n");
	assert_int_equal(slot_list(CK_TRUE, slots, 16, &n), CKR_OK);
	assert_int_equal(n, 0);
	assert_int_equal(slot_list(CK_FALSE, slots, 16, &n), CKR_OK);
	seen = 0;
	for (CK_ULONG i = 0; i < n; i++)
		seen += slots[i] == slot;
	assert_int_equal(seen, 1);
	assert_int_equal(p11->C_GetSlotInfo(slot, &si), CKR_OK);
	assert_false(si.flags & CKF_TOKEN_PRESENT);
	assert_int_equal(p11->C_GetTokenInfo(slot, &ti), CKR_TOKEN_NOT_PRESENT);
	assert_int_equal(p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h2),
			 CKR_TOKEN_NOT_PRESENT);
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len),
			 CKR_DEVICE_REMOVED);
	assert_int_equal(p11->C_GetSessionInfo(h, &sinfo), CKR_DEVICE_REMOVED);

	/* Re-inserted under a new slot id. */
	control("removed=1\nslot_offset=100\n");
	assert_int_equal(slot_list(CK_TRUE, slots, 16, &n), CKR_OK);
	assert_int_equal(n, 0);
	control("removed=0\nslot_offset=100\n");
	moved = token_slot();
	assert_int_equal(moved, slot + 100);
	assert_int_equal(slot_list(CK_TRUE, slots, 16, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++)
		assert_true(slots[i] != slot);
	assert_int_equal(p11->C_GetSlotInfo(moved, &si), CKR_OK);
	assert_true(si.flags & CKF_TOKEN_PRESENT);
	assert_int_equal(p11->C_GetTokenInfo(99, &ti), CKR_SLOT_ID_INVALID);

	/* The old session stays invalid; a new one works on the new slot id. */
	assert_int_equal(p11->C_GetSessionInfo(h, &sinfo), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len),
			 CKR_SESSION_HANDLE_INVALID);
	h2 = open_session(moved);
	assert_true(h2 != h);
	assert_int_equal(p11->C_GetSessionInfo(h2, &sinfo), CKR_OK);
	assert_int_equal(sinfo.slotID, moved);
	assert_int_equal(sinfo.state, CKS_RW_PUBLIC_SESSION);   /* login dropped */
	assert_int_equal(login(h2), CKR_OK);
	assert_int_equal(sign(h2, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len), CKR_OK);
	assert_int_equal(p11->C_CloseAllSessions(moved), CKR_OK);
	assert_int_equal(p11->C_GetSessionInfo(h2, &sinfo), CKR_SESSION_HANDLE_INVALID);
}

static void test_session_invalid(void **state)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h, h2, h3;
	CK_SESSION_INFO si;
	CK_OBJECT_HANDLE key;
	CK_ULONG sig_len;
	CK_BYTE sig[512];

	(void)state;
	slot = token_slot();
	h = open_login(slot);
	h2 = open_session(slot);
	control("session_invalid=2\n");
	/* First injected failure; the session is gone for good. */
	assert_int_equal(find_key(h, CKO_PRIVATE_KEY, &key), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(p11->C_GetSessionInfo(h, &si), CKR_SESSION_HANDLE_INVALID);
	/* Second injected failure. */
	assert_int_equal(p11->C_GetSessionInfo(h2, &si), CKR_SESSION_HANDLE_INVALID);
	/* Used up: a new session works, and since the real sessions were
	 * closed the token dropped the login. */
	h3 = open_session(slot);
	assert_int_equal(session_state(h3), CKS_RW_PUBLIC_SESSION);
	assert_int_equal(login(h3), CKR_OK);
	assert_int_equal(sign(h3, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len), CKR_OK);
	assert_int_equal(p11->C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(p11->C_CloseSession(h3), CKR_OK);
}

static void test_already_logged_in(void **state)
{
	CK_SESSION_HANDLE h;
	CK_ULONG sig_len;
	CK_BYTE sig[512];

	(void)state;
	control("already_logged_in=1\n");
	h = open_session(token_slot());
	assert_int_equal(login(h), CKR_USER_ALREADY_LOGGED_IN);
	/* The real login happened: the session can sign. */
	assert_int_equal(session_state(h), CKS_RW_USER_FUNCTIONS);
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len), CKR_OK);
	assert_int_equal(log_count("C_Login CKR_USER_ALREADY_LOGGED_IN"), 1);
}

static void test_pin_flags(void **state)
{
	CK_SLOT_ID slot;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE h;

	(void)state;
	slot = token_slot();
	control("pin_flags=count_low|final_try\n");
	assert_int_equal(p11->C_GetTokenInfo(slot, &ti), CKR_OK);
	assert_true(ti.flags & CKF_USER_PIN_COUNT_LOW);
	assert_true(ti.flags & CKF_USER_PIN_FINAL_TRY);
	assert_false(ti.flags & CKF_USER_PIN_LOCKED);
	assert_true(ti.flags & CKF_TOKEN_INITIALIZED);
	h = open_session(slot);
	assert_int_equal(login(h), CKR_OK);
	assert_int_equal(p11->C_Logout(h), CKR_OK);

	control("pin_flags=locked\n");
	assert_int_equal(p11->C_GetTokenInfo(slot, &ti), CKR_OK);
	assert_true(ti.flags & CKF_USER_PIN_LOCKED);
	assert_false(ti.flags & CKF_USER_PIN_COUNT_LOW);
	assert_int_equal(login(h), CKR_PIN_LOCKED);
	assert_int_equal(session_state(h), CKS_RW_PUBLIC_SESSION);

	control("pin_flags=none\n");
	assert_int_equal(p11->C_GetTokenInfo(slot, &ti), CKR_OK);
	assert_false(ti.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED));
	assert_int_equal(login(h), CKR_OK);
}

static void test_sign_delay(void **state)
{
	CK_SESSION_HANDLE h;
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_OBJECT_HANDLE key;
	CK_ULONG sig_len = 512;
	CK_BYTE sig[512];
	double t0, t1;

	(void)state;
	h = open_login(token_slot());
	assert_int_equal(find_key(h, CKO_PRIVATE_KEY, &key), CKR_OK);
	control("sign_delay_ms=300\n");
	assert_int_equal(p11->C_SignInit(h, &m, key), CKR_OK);
	t0 = now_ms();
	assert_int_equal(p11->C_Sign(h, (CK_BYTE_PTR)message, strlen(message), sig, &sig_len), CKR_OK);
	t1 = now_ms();
	assert_true(t1 - t0 >= 295.0);

	assert_int_equal(p11->C_SignInit(h, &m, key), CKR_OK);
	assert_int_equal(p11->C_SignUpdate(h, (CK_BYTE_PTR)message, strlen(message)), CKR_OK);
	sig_len = sizeof sig;
	t0 = now_ms();
	assert_int_equal(p11->C_SignFinal(h, sig, &sig_len), CKR_OK);
	t1 = now_ms();
	assert_true(t1 - t0 >= 295.0);
}

static void test_reset_after(void **state)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h, other, h2;
	CK_SESSION_INFO si;
	CK_ULONG sig_len;
	CK_BYTE sig[512];

	(void)state;
	slot = token_slot();
	control("reset_after=2\n");
	h = open_login(slot);
	other = open_session(slot);
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len), CKR_OK);
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len), CKR_OK);
	assert_int_equal(sig_len, 256);
	/* The card reset: every session is gone, so is the login. */
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len),
			 CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(p11->C_GetSessionInfo(other, &si), CKR_SESSION_HANDLE_INVALID);
	h2 = open_session(slot);
	assert_int_equal(session_state(h2), CKS_RW_PUBLIC_SESSION);
	assert_int_equal(login(h2), CKR_OK);
	assert_int_equal(sign(h2, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len), CKR_OK);
	assert_int_equal(log_count("C_Sign CKR_OK"), 3);
}

struct hang_job {
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;
	CK_RV rv;
	atomic_int done;
};

static void *hang_thread(void *arg)
{
	struct hang_job *j = arg;
	CK_BYTE sig[512];
	CK_ULONG sig_len = sizeof sig;

	j->rv = p11->C_Sign(j->h, (CK_BYTE_PTR)message, strlen(message), sig, &sig_len);
	atomic_store(&j->done, 1);
	return NULL;
}

static void test_hang(void **state)
{
	CK_SLOT_ID slot;
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_TOKEN_INFO ti;
	struct hang_job job = { 0 };
	pthread_t th;
	double t0;

	(void)state;
	slot = token_slot();
	job.h = open_login(slot);
	assert_int_equal(find_key(job.h, CKO_PRIVATE_KEY, &job.key), CKR_OK);
	assert_int_equal(p11->C_SignInit(job.h, &m, job.key), CKR_OK);
	control("hang=C_Sign\n");
	t0 = now_ms();
	assert_int_equal(pthread_create(&th, NULL, hang_thread, &job), 0);
	usleep(400 * 1000);
	assert_int_equal(atomic_load(&job.done), 0);
	/* Other calls go on while C_Sign hangs. */
	assert_int_equal(p11->C_GetTokenInfo(slot, &ti), CKR_OK);
	assert_int_equal(log_count("C_Sign CKR_OK"), 0);
	control("hang=C_Login\n");
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(job.rv, CKR_OK);
	assert_true(now_ms() - t0 >= 395.0);
	assert_int_equal(log_count("C_Sign CKR_OK"), 1);
}

/* fault_token limits hang (and sign_delay_ms) to the named token. */
static void test_fault_token(void **state)
{
	CK_SLOT_ID slot;
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	struct hang_job job = { 0 };
	pthread_t th;
	CK_BYTE sig[512];
	CK_ULONG sig_len = sizeof sig;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;

	(void)state;
	slot = token_slot();
	/* Another token is named: this one signs at once. */
	control("hang=C_Sign\nfault_token=some-other-token\n");
	h = open_login(slot);
	assert_int_equal(find_key(h, CKO_PRIVATE_KEY, &key), CKR_OK);
	assert_int_equal(p11->C_SignInit(h, &m, key), CKR_OK);
	assert_int_equal(p11->C_Sign(h, (CK_BYTE_PTR)message, strlen(message), sig, &sig_len), CKR_OK);
	assert_int_equal(log_count("C_Sign CKR_OK"), 1);

	/* This token is named: its C_Sign blocks until the hang is lifted. */
	control("hang=C_Sign\nfault_token=" TOKEN_LABEL "\n");
	job.h = h;
	job.key = key;
	assert_int_equal(p11->C_SignInit(job.h, &m, job.key), CKR_OK);
	assert_int_equal(pthread_create(&th, NULL, hang_thread, &job), 0);
	usleep(300 * 1000);
	assert_int_equal(atomic_load(&job.done), 0);
	assert_int_equal(log_count("C_Sign CKR_OK"), 1);
	control("fault_token=" TOKEN_LABEL "\n");
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(job.rv, CKR_OK);
	assert_int_equal(log_count("C_Sign CKR_OK"), 2);
}

static void test_rsa_pkcs_only(void **state)
{
	static const CK_BYTE sha256_prefix[] = {
		0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
		0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
	};
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_MECHANISM_TYPE mechs[256];
	CK_MECHANISM_INFO mi;
	CK_MECHANISM dm = { CKM_SHA256, NULL, 0 };
	CK_ULONG n, all, small, sig_len, ref_len, dlen;
	CK_BYTE sig[512], ref[512], di[sizeof sha256_prefix + 32];
	int rsa = 0, sha256rsa = 0;

	(void)state;
	slot = token_slot();
	h = open_login(slot);
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), ref, &ref_len), CKR_OK);
	assert_int_equal(p11->C_GetMechanismList(slot, NULL, &all), CKR_OK);

	control("mechanisms=rsa_pkcs_only\n");
	assert_int_equal(p11->C_GetMechanismList(slot, NULL, &n), CKR_OK);
	assert_true(n < all);
	small = n - 1;
	assert_int_equal(p11->C_GetMechanismList(slot, mechs, &small), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(small, n);
	assert_int_equal(p11->C_GetMechanismList(slot, mechs, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++) {
		rsa += mechs[i] == CKM_RSA_PKCS;
		sha256rsa += mechs[i] == CKM_SHA256_RSA_PKCS;
	}
	assert_int_equal(rsa, 1);
	assert_int_equal(sha256rsa, 0);
	assert_int_equal(p11->C_GetMechanismInfo(slot, CKM_SHA256_RSA_PKCS, &mi), CKR_MECHANISM_INVALID);
	assert_int_equal(p11->C_GetMechanismInfo(slot, CKM_RSA_PKCS, &mi), CKR_OK);
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len),
			 CKR_MECHANISM_INVALID);

	/* CKM_RSA_PKCS over a DigestInfo gives the same signature. */
	memcpy(di, sha256_prefix, sizeof sha256_prefix);
	dlen = 32;
	assert_int_equal(p11->C_DigestInit(h, &dm), CKR_OK);
	assert_int_equal(p11->C_Digest(h, (CK_BYTE_PTR)message, strlen(message),
				       di + sizeof sha256_prefix, &dlen), CKR_OK);
	assert_int_equal(dlen, 32);
	assert_int_equal(sign(h, CKM_RSA_PKCS, di, sizeof di, sig, &sig_len), CKR_OK);
	assert_int_equal(sig_len, ref_len);
	assert_memory_equal(sig, ref, sig_len);
}

static void test_call_log(void **state)
{
	CK_SESSION_HANDLE h;
	CK_ULONG sig_len;
	CK_BYTE sig[512];
	char *buf;

	(void)state;
	h = open_login(token_slot());
	assert_int_equal(login(h), CKR_USER_ALREADY_LOGGED_IN);
	assert_int_equal(sign(h, CKM_SHA256_RSA_PKCS, message, strlen(message), sig, &sig_len), CKR_OK);
	assert_int_equal(log_count("C_Initialize CKR_OK"), 1);
	assert_int_equal(log_count("C_OpenSession CKR_OK"), 1);
	assert_int_equal(log_count("C_Login CKR_OK"), 1);
	assert_int_equal(log_count("C_Login CKR_USER_ALREADY_LOGGED_IN"), 1);
	assert_int_equal(log_count("C_SignInit CKR_OK"), 1);
	assert_int_equal(log_count("C_Sign CKR_OK"), 1);

	buf = read_log();
	assert_null(strstr(buf, USER_PIN));
	assert_null(strstr(buf, message));
	/* Every line is "<function> <rv>". */
	for (char *p = buf; *p;) {
		char *nl = strchr(p, '\n');
		char fn[64], rv[64], extra[8];
		assert_non_null(nl);
		*nl = '\0';
		assert_int_equal(sscanf(p, "%63s %63s %7s", fn, rv, extra), 2);
		assert_memory_equal(fn, "C_", 2);
		assert_true(!strncmp(rv, "CKR_", 4) || !strncmp(rv, "0x", 2));
		p = nl + 1;
	}
	free(buf);
}

/* ---------------------------------------------------------------------- */

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forwarding, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_and_reinserted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_already_logged_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sign_delay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_after, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hang, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rsa_pkcs_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_call_log, setup, teardown),
	};
	return cmocka_run_group_tests_name("p11shim", tests, group_setup, group_teardown);
}
